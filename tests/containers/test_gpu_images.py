"""The GPU variants (Dockerfile ``VARIANT=gpu``, ``singularity/synthseg-bids-gpu.def``): built, not run.

No GPU is needed to build them; the check is that TensorFlow's CUDA libraries (the
``nvidia-*`` wheels of ``tensorflow[and-cuda]``) are installed in each, next to the full
``tensorflow`` wheel. Each build downloads about 3 GB of wheels and takes 6 to 12 minutes on
2 cores, so they run only when ``SYNTHSEG_GPU_IMAGE_TESTS=1`` is set (the CI keeps its run
under half an hour); both passed when run so.
"""

from __future__ import annotations

import os
import re

import pytest
from conftest import build_timed, converted_recipe
from container_images import ROOT, Container

pytestmark = [
    pytest.mark.container,
    pytest.mark.slow,
    pytest.mark.timeout(3600),  # ~3 GB of wheels each
    pytest.mark.skipif(os.environ.get("SYNTHSEG_GPU_IMAGE_TESTS") != "1",
                       reason="GPU image builds (~3 GB of CUDA wheels each) run with SYNTHSEG_GPU_IMAGE_TESTS=1"),
]

CUDA_WHEELS = {"nvidia-cublas-cu12", "nvidia-cudnn-cu12", "nvidia-cuda-runtime-cu12", "nvidia-cufft-cu12",
               "nvidia-cusolver-cu12", "nvidia-cusparse-cu12", "nvidia-nccl-cu12"}


def installed(engine, tag: str) -> dict[str, str]:
    with Container(engine, tag) as container:
        freeze = container.run("pip", "freeze", check=True).stdout
    return {m[1].lower().replace("_", "-"): m[2] for m in re.finditer(r"^([\w.-]+)==(\S+)$", freeze, re.M)}


def assert_gpu_packages(packages: dict[str, str]) -> None:
    assert CUDA_WHEELS <= set(packages), sorted(CUDA_WHEELS - set(packages))
    assert "tensorflow" in packages and "tensorflow-cpu" not in packages


def test_docker_gpu_variant_has_the_cuda_wheels(engine, base_image):
    tag = build_timed(engine, "Dockerfile, VARIANT=gpu", "localhost/synthseg-bids:test-gpu",
                      build_args={"BASE_IMAGE": base_image, "VARIANT": "gpu"})
    assert_gpu_packages(installed(engine, tag))
    assert "SYNTHSEG_BIDS_CONTAINER=docker-gpu" in engine.config(tag)["Env"]
    engine.podman("rmi", tag)


def test_apptainer_gpu_recipe_has_the_cuda_wheels(engine, base_image, tmp_path):
    dockerfile, _ = converted_recipe(ROOT / "singularity" / "synthseg-bids-gpu.def", base_image, tmp_path)
    tag = build_timed(engine, "singularity/synthseg-bids-gpu.def (via spython)", "localhost/synthseg-bids:test-gpu-def",
                      dockerfile=dockerfile)
    assert_gpu_packages(installed(engine, tag))
    assert "SYNTHSEG_BIDS_CONTAINER=apptainer-gpu" in engine.config(tag)["Env"]
    engine.podman("rmi", tag)
