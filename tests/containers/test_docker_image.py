"""The Docker image (``Dockerfile``, ``VARIANT=cpu``) built on a local stand-in base and run for real.

The example dataset runs inside the image as uid 4242 (no passwd entry, ``$HOME`` unset),
the dataset mounted read-only and the output and work folders read-write, as
``docker run -u $(id -u):$(id -g)`` does; the label maps must equal those of a run of the
same commit in the test environment (a virtual environment), voxel for voxel.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import USER, run_example
from container_images import Container, runtime_versions
from synthseg_bids.bids.dataset import find_validator
from packaging.utils import canonicalize_name

pytestmark = pytest.mark.container

MAX_CPU_IMAGE_BYTES = 1.5e9


@pytest.fixture(scope="module")
def docker_run(engine, cpu_image, example):
    return run_example(engine, cpu_image, example, "docker", ["synthseg-bids"])


def label_maps(folder: Path) -> dict[str, nib.Nifti1Image]:
    return {str(p.relative_to(folder)): nib.load(p) for p in sorted(folder.rglob("*_dseg.nii.gz"))}


def validator_errors(folder: Path) -> list[str]:
    """Errors of the BIDS validator (``bids-validator-deno``, a dependency of the package) on ``folder``."""
    validator = find_validator()
    if validator is None:
        pytest.skip("bids-validator-deno not installed (pip install bids-validator-deno)")
    proc = subprocess.run([validator, str(folder), "--format", "json"], capture_output=True, text=True)
    issues = json.loads(proc.stdout)["issues"]["issues"]
    return [f"{i['code']} {i.get('location')}" for i in issues if i["severity"] == "error"]


def assert_same_label_maps(out: Path, reference: Path) -> None:
    ours, theirs = label_maps(out), label_maps(reference)
    assert len(theirs) == 4 and sorted(ours) == sorted(theirs)
    for name, image in theirs.items():
        assert np.array_equal(np.asanyarray(ours[name].dataobj), np.asanyarray(image.dataobj)), name
        assert np.array_equal(ours[name].affine, image.affine), name


def assert_clean_log(log: str) -> None:
    """No traceback, no error, and no library complaining about an unwritable cache folder."""
    for text in ("Traceback", "synthseg-bids: error", "not a writable directory", "Permission denied"):
        assert text not in log, log[-3000:]


def assert_owned_by_user(out: Path) -> None:
    uid, gid = (int(n) for n in USER.split(":"))
    wrong = [str(p) for p in [out, *out.rglob("*")] if (p.lstat().st_uid, p.lstat().st_gid) != (uid, gid)]
    assert not wrong, wrong[:5]


def test_cpu_image_is_small_and_runs_as_a_non_root_user(engine, cpu_image):
    assert engine.size(cpu_image) <= MAX_CPU_IMAGE_BYTES
    config = engine.config(cpu_image)
    assert config["User"] == "1000:1000" and config["Entrypoint"] == ["synthseg-bids"]
    assert "SYNTHSEG_BIDS_CONTAINER=docker-cpu" in config["Env"]


def test_image_runs_the_example_as_any_user_without_home(docker_run):
    proc = docker_run["proc"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_clean_log(proc.stderr)


def test_label_maps_equal_the_venv_run(docker_run, example):
    assert_same_label_maps(docker_run["out"], example["venv_out"])


def test_derivatives_are_validator_clean_and_owned_by_the_user(docker_run):
    assert validator_errors(docker_run["out"]) == []
    assert_owned_by_user(docker_run["out"])
    assert_owned_by_user(docker_run["work"])


def test_generated_by_names_the_container(docker_run):
    description = json.loads((docker_run["out"] / "dataset_description.json").read_text())
    assert description["GeneratedBy"][0]["Container"] == {"Type": "docker-cpu"}


def test_nothing_written_into_the_image(docker_run):
    assert docker_run["written"] == set()
    assert list(docker_run["tmp"].iterdir()) == []  # the private cache folder is removed at exit


def test_unwritable_output_fails_with_one_line(engine, cpu_image, example, tmp_path):
    """An output folder the container's user cannot write (owned by root, 0755): one error line, nothing written."""
    out = tmp_path / "out"
    out.mkdir(mode=0o755)
    volumes = {example["bids"]: "/data:ro", out: "/out"}
    with Container(engine, cpu_image) as container:
        proc = container.run("env", "-u", "HOME", "synthseg-bids", "/data", "/out", "participant", user=USER,
                             volumes=volumes)
    assert proc.returncode != 0
    ours = [line for line in proc.stderr.splitlines() if "error" in line.lower() and "exit status" not in line]
    assert len(ours) == 1 and ours[0].startswith("synthseg-bids: error: /out/"), proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert list(out.iterdir()) == []


def test_unknown_variant_fails_the_build_with_one_line(engine, base_image):
    proc = engine.build("localhost/synthseg-bids:test-bad", Path(__file__).parents[2],
                        build_args={"BASE_IMAGE": base_image, "VARIANT": "tpu"}, check=False)
    assert proc.returncode != 0
    ours = [line for line in (proc.stdout + proc.stderr).splitlines() if "VARIANT" in line and "STEP" not in line]
    assert ours == ["synthseg-bids image: VARIANT must be cpu or gpu, not 'tpu'"]


def test_image_installs_the_venv_versions_except_tensorflow_flavour(engine, cpu_image):
    with Container(engine, cpu_image) as container:
        freeze = container.run("pip", "freeze", "--all", check=True).stdout
    image = {canonicalize_name(m[1]): m[2] for m in re.finditer(r"^([\w.-]+)==(\S+)$", freeze, re.M)}
    assert re.search(r"^synthseg-bids @ file://\S+synthseg_bids-[\w.]+-py3-none-any\.whl$", freeze, re.M), freeze
    expected = runtime_versions()
    expected["tensorflow-cpu"] = expected.pop("tensorflow")
    expected.pop("synthseg-bids")
    image.pop("pip")  # what each virtual environment starts with
    assert image == expected
