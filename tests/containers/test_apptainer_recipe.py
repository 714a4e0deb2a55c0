"""The Apptainer recipe (``singularity/synthseg-bids.def``) built and run without Apptainer.

spython turns the definition into a Dockerfile (its ``%files``, ``%environment`` and
``%post``, the base swapped for the local stand-in), built with podman. The example dataset
then runs through the recipe's ``%runscript`` as Apptainer runs it for a user: the calling
uid (4242 here), the host's home folder bound read-only and set as ``$HOME``, no other host
variables (``--cleanenv``), ``APPTAINER_CONTAINER`` naming the image; the dataset read-only.
``%test`` runs too. A real ``apptainer build`` is not run here.
"""

from __future__ import annotations

import json
import re

import pytest
from conftest import build_timed, run_example
from container_images import ROOT, Container
from test_docker_image import assert_clean_log, assert_owned_by_user, assert_same_label_maps, validator_errors

pytestmark = pytest.mark.container

DEFINITION = ROOT / "singularity" / "synthseg-bids.def"
SIF = "/images/synthseg-bids.sif"


def converted_recipe(definition, base: str, folder) -> tuple:
    """``(Dockerfile, recipe)``: spython's Dockerfile of ``definition`` on ``base``, and the parsed recipe."""
    parsers = pytest.importorskip("spython.main.parse.parsers", reason="spython not installed (pip install spython)")
    writers = pytest.importorskip("spython.main.parse.writers")
    recipes = parsers.SingularityParser(str(definition)).recipe  # {stage: recipe}
    text = writers.DockerWriter(recipes).convert()
    recipe = next(iter(recipes.values())) if isinstance(recipes, dict) else recipes
    text = re.sub(r"^FROM \S+", f"FROM {base}", text, count=1, flags=re.M)
    text = re.sub(r"^HEALTHCHECK .*$", "", text, flags=re.M)  # %test: run below as a command
    dockerfile = folder / f"{definition.stem}.Dockerfile"
    dockerfile.write_text(text)
    return dockerfile, recipe


@pytest.fixture(scope="module")
def apptainer_image(engine, base_image, tmp_path_factory):
    dockerfile, recipe = converted_recipe(DEFINITION, base_image, tmp_path_factory.mktemp("recipe"))
    tag = build_timed(engine, "singularity/synthseg-bids.def (via spython)", "localhost/synthseg-bids:test-apptainer",
                      dockerfile=dockerfile)
    return tag, recipe


@pytest.fixture(scope="module")
def apptainer_run(engine, apptainer_image, example):
    tag, recipe = apptainer_image
    runscript = ["sh", "-c", recipe.cmd, "runscript"]
    return run_example(engine, tag, example, "apptainer", runscript, env={"APPTAINER_CONTAINER": SIF},
                       home="/home/user")


def test_recipe_test_section_passes(engine, apptainer_image):
    tag, _ = apptainer_image
    with Container(engine, tag) as container:
        proc = container.run("sh", "/tests.sh", user="4242:4242")
    assert proc.returncode == 0 and proc.stdout.startswith("synthseg-bids "), proc.stderr


def test_runscript_runs_the_example_with_a_read_only_home(apptainer_run):
    proc = apptainer_run["proc"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_clean_log(proc.stderr)


def test_label_maps_equal_the_venv_run(apptainer_run, example):
    assert_same_label_maps(apptainer_run["out"], example["venv_out"])


def test_derivatives_are_validator_clean_owned_and_recorded(apptainer_run):
    out = apptainer_run["out"]
    assert validator_errors(out) == []
    assert_owned_by_user(out)
    description = json.loads((out / "dataset_description.json").read_text())
    assert description["GeneratedBy"][0]["Container"] == {"Type": "apptainer-cpu", "Tag": SIF}


def test_nothing_written_into_the_image_or_home(apptainer_run):
    assert apptainer_run["written"] == set()
    assert list(apptainer_run["tmp"].iterdir()) == []
    assert list(apptainer_run["home"].iterdir()) == []

