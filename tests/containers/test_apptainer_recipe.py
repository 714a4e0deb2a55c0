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

import pytest
from conftest import SIF
from container_images import Container

pytestmark = pytest.mark.container

# The example's run through the %runscript (exit status, log, label maps, validator, ownership) is checked in
# test_example_runs.py, with the Docker image's; its fixtures (apptainer_image, apptainer_run) are in conftest.py.


def test_recipe_test_section_passes(engine, apptainer_image):
    tag, _ = apptainer_image
    with Container(engine, tag) as container:
        proc = container.run("sh", "/tests.sh", user="4242:4242")
    assert proc.returncode == 0 and proc.stdout.startswith("synthseg-bids "), proc.stderr


def test_generated_by_names_the_image(apptainer_run):
    description = json.loads((apptainer_run["out"] / "dataset_description.json").read_text())
    assert description["GeneratedBy"][0]["Container"] == {"Type": "apptainer-cpu", "Tag": SIF}


def test_nothing_written_into_the_image_or_home(apptainer_run):
    assert apptainer_run["written"] == set()
    assert list(apptainer_run["tmp"].iterdir()) == []
    assert list(apptainer_run["home"].iterdir()) == []

