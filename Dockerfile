# synthseg-bids BIDS-App image, CPU (default) or GPU variant.
#   docker build -t synthseg-bids:0.1.0 .
#   docker run --rm -v /data/bids:/data:ro -v /data/out:/out synthseg-bids:0.1.0 /data /out participant
#   docker build --build-arg VARIANT=gpu -t synthseg-bids:0.1.0-gpu .
#   docker run --rm --gpus all -v /data/bids:/data:ro -v /data/out:/out synthseg-bids:0.1.0-gpu /data /out participant
# The GPU variant installs the `gpu` extra (TensorFlow's CUDA libraries as pip wheels); the NVIDIA
# driver comes from the host (`--gpus all`, NVIDIA Container Toolkit).
# The package is installed exactly as the README says (`pip install .`); the trained model
# ships inside the package (synthseg_bids/data/), so the image needs no network at run time.
FROM python:3.11.11-slim-bookworm

# cpu or gpu; recorded in GeneratedBy.Container of the derivatives (docker-cpu / docker-gpu)
ARG VARIANT=cpu

LABEL org.opencontainers.image.title="synthseg-bids" \
      org.opencontainers.image.description="Contrast-agnostic brain MRI segmentation (SynthSeg's method) as a BIDS-App" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    NIPYPE_NO_ET=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    MPLCONFIGDIR=/tmp/matplotlib \
    SYNTHSEG_BIDS_CONTAINER=docker-${VARIANT}

COPY . /opt/synthseg-bids-src
RUN case "${VARIANT}" in cpu) extra="" ;; gpu) extra="[gpu]" ;; *) echo "VARIANT must be cpu or gpu" >&2; exit 1 ;; esac \
    && pip install --no-cache-dir /opt/synthseg-bids-src"${extra}" \
    && rm -rf /opt/synthseg-bids-src \
    && useradd --create-home --uid 1000 --user-group --shell /usr/sbin/nologin synthseg

USER 1000:1000
WORKDIR /home/synthseg

ENTRYPOINT ["synthseg-bids"]
CMD ["--help"]
