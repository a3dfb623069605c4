# serves: workstation
#
# Training and export on an x86-64 machine with an NVIDIA GPU. PyPI's torch wheels for Linux x86-64 bring
# their own CUDA libraries, so the host needs only the NVIDIA driver and the NVIDIA Container Toolkit:
#
#   docker build -f docker/train.Dockerfile -t sqakd-edge:train .
#   docker run --rm --gpus all -v "$PWD/runs:/work/runs" sqakd-edge:train demo --out runs/demo
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY setup.cfg pyproject.toml README.md ./
COPY sqakd_edge ./sqakd_edge
COPY jetson ./jetson
COPY deploy ./deploy
RUN pip install --no-cache-dir torch==2.14.1 torchvision==0.29.1 \
    && pip install --no-cache-dir . \
    && useradd --create-home --uid 1000 sqakd \
    && mkdir -p /work \
    && chown sqakd /work

USER 1000
WORKDIR /work
ENTRYPOINT ["sqakd-edge"]
CMD ["--help"]
