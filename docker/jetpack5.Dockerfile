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
    && apt-get install -y --no-install-recommends python3-pip python3-dev python3-numpy python3-setuptools python3-wheel \
       build-essential \
    && rm -rf /var/lib/apt/lists/*

# pycuda 2024.1.2's pyproject.toml lists numpy>=1.24 as a build requirement (its setup.py installs no numpy):
# in pip's build isolation it would compile against a numpy the image does not have and pycuda.driver would
# then fail to import. --no-build-isolation builds it against the image's own numpy 1.17 (Ubuntu 20.04).
# (pycuda.driver needs the host's libcuda, mounted only at run time, so the probe checks it then.)
RUN pip3 install --no-cache-dir --no-build-isolation pycuda==2024.1.2

COPY jetson/*.py /opt/sqakd-edge/
WORKDIR /opt/sqakd-edge
# bench runs it as the cache owner's uid:gid (docker run --user), so nothing here may need root at run time
ENTRYPOINT ["python3", "/opt/sqakd-edge/trt_bench.py"]
CMD ["platform"]
