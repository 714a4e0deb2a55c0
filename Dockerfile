# synthseg-bids BIDS-App image, CPU (default) or GPU variant.
#   docker build -t synthseg-bids:0.1.0 .
#   docker run --rm -u "$(id -u):$(id -g)" -v /data/bids:/data:ro -v /data/out:/out -v /data/work:/work \
#       synthseg-bids:0.1.0 /data /out participant -w /work
#   docker build --build-arg VARIANT=gpu -t synthseg-bids:0.1.0-gpu .
#   docker run --rm --gpus all -u "$(id -u):$(id -g)" -v /data/bids:/data:ro -v /data/out:/out -v /data/work:/work \
#       synthseg-bids:0.1.0-gpu /data /out participant -w /work
# VARIANT=cpu installs TensorFlow's CPU-only wheel (tensorflow-cpu, same release); VARIANT=gpu
# installs the `gpu` extra (TensorFlow's CUDA libraries as pip wheels); the NVIDIA driver comes
# from the host (`--gpus all`, NVIDIA Container Toolkit). All other packages are those
# `pip install .` installs (containers/install.sh). The trained model ships inside the package
# (synthseg_bids/data/), so the image needs no network at run time. It runs as any user
# (`-u`): caches go to a private temporary folder when $HOME is not writable.
# BASE_IMAGE: any Debian-based image with Python 3.11 on PATH as `python3`.
ARG BASE_IMAGE=python:3.11.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
ARG VARIANT=cpu
COPY . /opt/synthseg-bids-src
RUN sh /opt/synthseg-bids-src/containers/install.sh "${VARIANT}" /opt/synthseg-bids-src /opt/venv

FROM ${BASE_IMAGE}
# cpu or gpu; recorded in GeneratedBy.Container of the derivatives (docker-cpu / docker-gpu)
ARG VARIANT=cpu

LABEL org.opencontainers.image.title="synthseg-bids" \
      org.opencontainers.image.description="Contrast-agnostic brain MRI segmentation (SynthSeg's method) as a BIDS-App" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PATH=/opt/venv/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    NIPYPE_NO_ET=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    SYNTHSEG_BIDS_CONTAINER=docker-${VARIANT}

COPY --from=build /opt/venv /opt/venv
RUN useradd --create-home --uid 1000 --user-group --shell /usr/sbin/nologin synthseg

USER 1000:1000
# writable by any user: the default work folder (`work` in the current folder) lands here
WORKDIR /tmp

ENTRYPOINT ["synthseg-bids"]
CMD ["--help"]
