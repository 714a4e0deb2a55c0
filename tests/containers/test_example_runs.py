"""The example dataset run in each image: as the Docker image runs it (uid 4242, no ``$HOME``) and through
the Apptainer recipe's ``%runscript`` (a read-only home); see conftest.py's ``docker_run`` and ``apptainer_run``.
The label maps must equal those of the same commit's run in the test environment, voxel for voxel."""

from __future__ import annotations

import pytest
from example_checks import assert_clean_log, assert_owned_by_user, assert_same_label_maps, validator_errors

pytestmark = [pytest.mark.container, pytest.mark.parametrize("run", ["docker_run", "apptainer_run"])]


def test_the_example_runs_without_errors(run, request):
    proc = request.getfixturevalue(run)["proc"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_clean_log(proc.stderr)


def test_label_maps_equal_the_venv_run(run, request, example):
    assert_same_label_maps(request.getfixturevalue(run)["out"], example["venv_out"])


def test_derivatives_are_validator_clean_and_owned_by_the_user(run, request):
    out = request.getfixturevalue(run)["out"]
    assert validator_errors(out) == []
    assert_owned_by_user(out)
