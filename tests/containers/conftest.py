"""Session fixtures of the container tests: one local base, one build per image, one example dataset.

Everything (image store, base root file system, runs) lives under one temporary folder,
removed at the end of the session. Skipped with the reason where ``podman``, ``buildah`` or
``debootstrap`` is missing (``apt-get install podman buildah debootstrap``, as ``.ci/run``
does when it runs as root) or the tests do not run as root.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from container_images import ROOT, Container, Engine, build_base, missing_programs
from helpers import FAST_TOML

#: what the session built: name -> (size in bytes, build seconds); printed after the tests
BUILT: dict[str, tuple[int, float]] = {}
BASE_TAG = "localhost/synthseg-bids-test-base:3.11"
USER = "4242:4242"


def pytest_terminal_summary(terminalreporter):
    if BUILT:
        terminalreporter.section("container images")
        for name, (size, seconds) in BUILT.items():
            terminalreporter.write_line(f"{name}: {size / 1e9:.2f} GB, built in {seconds:.0f} s")


@pytest.fixture(scope="session")
def engine():
    missing = missing_programs()
    if missing:
        pytest.skip(f"container tools not installed ({', '.join(missing)} missing): "
                    "apt-get install podman buildah debootstrap")
    if os.geteuid() != 0:
        pytest.skip("debootstrap and buildah's chroot isolation need root; run the tests as root (as CI does)")
    folder = Path(tempfile.mkdtemp(prefix="synthseg-bids-images-", dir=os.environ.get("TMPDIR", "/var/tmp")))
    engine = Engine(folder)
    yield engine
    engine.remove_store()


def build_timed(engine: Engine, name: str, tag: str, **kwargs) -> str:
    """``engine.build`` of ``tag``, its size and time recorded under ``name`` in :data:`BUILT`."""
    start = time.monotonic()
    engine.build(tag, ROOT, **kwargs)
    BUILT[name] = (engine.size(tag), time.monotonic() - start)
    return tag


@pytest.fixture(scope="session")
def base_image(engine) -> str:
    start = time.monotonic()
    build_base(engine, engine.folder, BASE_TAG)
    BUILT["local base (debootstrap bookworm + python3.11)"] = (engine.size(BASE_TAG), time.monotonic() - start)
    return BASE_TAG


@pytest.fixture(scope="session")
def cpu_image(engine, base_image) -> str:
    return build_timed(engine, "Dockerfile, VARIANT=cpu", "localhost/synthseg-bids:test-cpu",
                       build_args={"BASE_IMAGE": base_image})


@pytest.fixture(scope="session")
def example(tmp_path_factory) -> dict:
    """The example dataset (``synthseg-bids-example``), fast inference settings, and the venv's run of it."""
    root = tmp_path_factory.mktemp("example")
    subprocess.run([sys.executable, "-m", "synthseg_bids.cli.example_data", str(root / "bids")], check=True)
    (root / "settings").mkdir()
    (root / "settings" / "fast.toml").write_text(FAST_TOML)
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)  # readable by the container's user
    proc = subprocess.run([sys.executable, "-m", "synthseg_bids.cli.main", str(root / "bids"), str(root / "venv_out"),
                           "participant", "-w", str(root / "venv_work"), *app_options(root / "settings")],
                          capture_output=True, text=True, cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"root": root, "bids": root / "bids", "settings": root / "settings", "venv_out": root / "venv_out"}


def app_options(settings: Path) -> list[str]:
    """Options of every run of the example (venv and images)."""
    return ["--inference-settings", str(settings / "fast.toml")]


def run_example(engine: Engine, image: str, example: dict, name: str, command: list[str], *,
                env: dict | None = None, home: str | None = None) -> dict:
    """Run ``command /data /out participant -w /work ...`` in ``image`` as uid 4242, dataset read-only.

    ``home``: a read-only empty folder mounted there and set as ``$HOME``; else ``$HOME`` is
    unset. Returns the folders, the completed process and what the run wrote into the image's tree.
    """
    root = example["root"] / name
    folders = {key: root / key for key in ("out", "work", "tmp", "home")}
    for key, folder in folders.items():
        folder.mkdir(parents=True)
        if key in ("out", "work"):
            os.chown(folder, 4242, 4242)
    folders["tmp"].chmod(0o1777)
    volumes = {example["bids"]: "/data:ro", example["settings"]: "/settings:ro", folders["out"]: "/out",
               folders["work"]: "/work", folders["tmp"]: "/tmp"}
    if home:
        volumes[folders["home"]] = f"{home}:ro"
    with Container(engine, image) as container:
        container.run("true", user=USER, volumes=volumes, check=True)
        before = container.written()
        environment = ["env", *(["HOME=" + home] if home else ["-u", "HOME"])]
        proc = container.run(*environment, *command, "/data", "/out", "participant", "-w", "/work",
                             *app_options(Path("/settings")), user=USER, volumes=volumes, env=env)
        written = container.written() - before
    return {**folders, "proc": proc, "written": written}


# -- the example dataset run in each image (checked together in test_example_runs.py) ----------

DEFINITION = ROOT / "singularity" / "synthseg-bids.def"
SIF = "/images/synthseg-bids.sif"


@pytest.fixture(scope="session")
def docker_run(engine, cpu_image, example):
    return run_example(engine, cpu_image, example, "docker", ["synthseg-bids"])


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


@pytest.fixture(scope="session")
def apptainer_image(engine, base_image, tmp_path_factory):
    dockerfile, recipe = converted_recipe(DEFINITION, base_image, tmp_path_factory.mktemp("recipe"))
    tag = build_timed(engine, "singularity/synthseg-bids.def (via spython)", "localhost/synthseg-bids:test-apptainer",
                      dockerfile=dockerfile)
    return tag, recipe


@pytest.fixture(scope="session")
def apptainer_run(engine, apptainer_image, example):
    tag, recipe = apptainer_image
    runscript = ["sh", "-c", recipe.cmd, "runscript"]
    return run_example(engine, tag, example, "apptainer", runscript, env={"APPTAINER_CONTAINER": SIF},
                       home="/home/user")
