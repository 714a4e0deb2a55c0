"""The Docker image (``Dockerfile``, ``VARIANT=cpu``) built on a local stand-in base and run for real.

The example dataset runs inside the image as uid 4242 (no passwd entry, ``$HOME`` unset),
the dataset mounted read-only and the output and work folders read-write, as
``docker run -u $(id -u):$(id -g)`` does; the label maps must equal those of a run of the
same commit in the test environment (a virtual environment), voxel for voxel.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import USER
from container_images import Container, runtime_versions
from example_checks import assert_owned_by_user
from packaging.utils import canonicalize_name

pytestmark = pytest.mark.container

MAX_CPU_IMAGE_BYTES = 1.5e9


def test_cpu_image_is_small_and_runs_as_a_non_root_user(engine, cpu_image):
    assert engine.size(cpu_image) <= MAX_CPU_IMAGE_BYTES
    config = engine.config(cpu_image)
    assert config["User"] == "1000:1000" and config["Entrypoint"] == ["synthseg-bids"]
    assert "SYNTHSEG_BIDS_CONTAINER=docker-cpu" in config["Env"]


def test_work_folder_is_owned_by_the_user(docker_run):
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
