# serves: jetson-nano
#
# The device program for JetPack 4.6.x (L4T R32.7.1, Ubuntu 18.04, Python 3.6, TensorRT 8.2.1, CUDA 10.2).
# l4t-base carries no CUDA or TensorRT: with `--runtime nvidia` the host's CUDA, cuDNN and TensorRT
# (including its Python 3.6 bindings) are mounted into the container. Building pycuda needs CUDA too, so
# build ON THE JETSON with "default-runtime": "nvidia" in /etc/docker/daemon.json and the classic builder:
#
#   DOCKER_BUILDKIT=0 docker build -f docker/jetpack4.Dockerfile -t sqakd-edge-device:jp4 .
#   docker run --rm --runtime nvidia sqakd-edge-device:jp4 platform
FROM nvcr.io/nvidia/l4t-base:r32.7.1

ARG DEBIAN_FRONTEND=noninteractive
ENV CUDA_HOME=/usr/local/cuda \
    PATH=/usr/local/cuda/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1

# Apt packages follow the base image's Ubuntu 18.04 archive; exact pins would break on the next L4T point
# release, and the image is rebuilt per JetPack anyway.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3-pip python3-dev python3-numpy python3-setuptools \
       python3-wheel build-essential \
    && rm -rf /var/lib/apt/lists/*

# pycuda 2022.1 is the last release that supports Python 3.6; it compiles against /usr/local/cuda. pip 21.3.1
# is the last pip for Python 3.6; --no-build-isolation builds against the image's numpy (in isolation, pip >= 10
# first compiles numpy 1.12 from source: tens of minutes on a Nano, and then a numpy the image does not run).
RUN python3 -m pip install --no-cache-dir pip==21.3.1 \
    && python3 -m pip install --no-cache-dir --no-build-isolation pycuda==2022.1

COPY jetson/*.py /opt/sqakd-edge/
WORKDIR /opt/sqakd-edge
ENTRYPOINT ["python3", "/opt/sqakd-edge/trt_bench.py"]
CMD ["platform"]
