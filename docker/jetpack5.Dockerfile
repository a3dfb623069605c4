# serves: jetson-xavier-nx
#
# The device program for JetPack 5.1.2 (L4T R35.4.1, Ubuntu 20.04, Python 3.8, TensorRT 8.5, CUDA 11.4).
# l4t-jetpack images carry CUDA, cuDNN and TensorRT themselves; run with `--runtime nvidia` for the GPU.
# Build on the Jetson (arm64):
#
#   docker build -f docker/jetpack5.Dockerfile -t sqakd-edge-device:jp5 .
#   docker run --rm --runtime nvidia sqakd-edge-device:jp5 platform
FROM nvcr.io/nvidia/l4t-jetpack:r35.4.1

ARG DEBIAN_FRONTEND=noninteractive
ENV CUDA_HOME=/usr/local/cuda \
    PATH=/usr/local/cuda/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1

# Apt packages follow the base image's Ubuntu archive; exact pins would break on the next L4T point release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3-pip python3-dev python3-numpy build-essential \
    && rm -rf /var/lib/apt/lists/*

RUN pip3 install --no-cache-dir pycuda==2024.1.2

COPY jetson/*.py /opt/sqakd-edge/
WORKDIR /opt/sqakd-edge
ENTRYPOINT ["python3", "/opt/sqakd-edge/trt_bench.py"]
CMD ["platform"]
