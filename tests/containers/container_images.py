"""Build and run the project's images with Debian's ``podman``/``buildah``, without a registry or a daemon.

- :func:`build_base` makes the stand-in for ``python:3.11.11-slim-bookworm``: ``debootstrap
  --variant=minbase bookworm`` with ``python3`` (3.11) and a virtual environment in
  ``/usr/local`` (``python``, ``pip`` on ``PATH`` as in the official image), imported with
  ``podman import``. The recipes take it as their base (``--build-arg BASE_IMAGE=...`` or
  the ``FROM`` line of the converted Apptainer recipe).
- :class:`Engine` runs ``podman``/``buildah`` on a private image store (``--root``) under a
  temporary folder, so the machine's own images are neither read nor touched; builds use
  ``--isolation chroot --network host`` and get the build machine's CA certificates for
  ``pip`` (TLS-intercepting proxies) through read-only bind mounts, so the images keep nothing of them.
- :class:`Container` runs commands in a working container of an image with ``buildah run
  --isolation chroot`` (``podman run`` needs cgroups and ``setrlimit``, which sandboxes may
  refuse); :meth:`Container.written` lists what the commands wrote into the image's own tree.
- :func:`runtime_versions` gives the versions of everything ``synthseg-bids`` needs in the
  running environment; ``python tests/containers/container_images.py`` prints them as the
  constraints the images install with (``containers/constraints.txt``).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

PROGRAMS = ("podman", "buildah", "debootstrap")
ROOT = Path(__file__).resolve().parents[2]
PATH = "/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin"
CONSTRAINTS_HEADER = """\
# The versions the images install (containers/install.sh) and CI's environment (.ci/run):
# everything synthseg-bids requires at run time, as tested. `pip install . -c containers/constraints.txt`
# gives a virtual environment the same versions. After changing install_requires, regenerate in
# an environment where the tests pass: python tests/containers/container_images.py > containers/constraints.txt
"""


def missing_programs() -> list[str]:
    """Names of the programs this module needs that are not on PATH (or in /usr/sbin)."""
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    return [name for name in PROGRAMS if shutil.which(name, path=path) is None]


def debian_mirror() -> str:
    """The Debian archive apt uses on this machine (first ``deb``/``URIs:`` of the main archive)."""
    texts = [p.read_text() for p in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
             if p.is_file()]
    for url in re.findall(r"(?:^deb\s+(?:\[[^]]*\]\s+)?|^URIs:\s*)(\S+)", "\n".join(texts), re.M):
        if url.rstrip("/").endswith("/debian"):
            return url
    return "http://deb.debian.org/debian"


def ca_bundle() -> Path:
    """The CA certificates this machine's pip trusts (``PIP_CERT``/``SSL_CERT_FILE``, else Debian's bundle)."""
    for name in ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
        if os.environ.get(name) and Path(os.environ[name]).is_file():
            return Path(os.environ[name])
    return Path("/etc/ssl/certs/ca-certificates.crt")


class Engine:
    """``podman``/``buildah`` on a private store under ``folder``."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.store = ["--root", str(self.folder / "storage"), "--runroot", str(self.folder / "run")]
        pip_conf = self.folder / "pip.conf"
        pip_conf.write_text("[global]\ncert = /etc/ssl/build-host-ca.crt\n")
        self.build_mounts = ["-v", f"{ca_bundle()}:/etc/ssl/build-host-ca.crt:ro", "-v", f"{pip_conf}:/etc/pip.conf:ro"]

    def podman(self, *args: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
        return _run(["podman", *self.store, *args], check, **kwargs)

    def buildah(self, *args: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
        return _run(["buildah", *self.store, *args], check, **kwargs)

    def build(self, tag: str, context: Path, *, dockerfile: Path | None = None, build_args: dict | None = None,
              check: bool = True) -> subprocess.CompletedProcess:
        """``podman build`` of ``context`` (its ``Dockerfile`` unless given) as ``tag``."""
        args = ["build", "--isolation", "chroot", "--network", "host", "--pull=never", *self.build_mounts, "-t", tag]
        for name, value in (build_args or {}).items():
            args += ["--build-arg", f"{name}={value}"]
        if dockerfile is not None:
            args += ["-f", str(dockerfile)]
        return self.podman(*args, str(context), check=check)

    def size(self, tag: str) -> int:
        """Size of the image in bytes, as ``podman images`` reports it."""
        return int(self.podman("image", "inspect", "--format", "{{.Size}}", tag).stdout)

    def config(self, tag: str) -> dict:
        """The image's configuration (``Env``, ``User``, ``Entrypoint``, ``WorkingDir`` ...)."""
        return json.loads(self.podman("image", "inspect", tag).stdout)[0]["Config"]

    def remove_store(self) -> None:
        self.buildah("rm", "--all", check=False)
        self.podman("system", "reset", "--force", check=False)
        shutil.rmtree(self.folder, ignore_errors=True)


def _run(cmd: list[str], check: bool, **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} ... failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
                           f"{proc.stderr[-3000:]}")
    return proc


def build_base(engine: Engine, folder: Path, tag: str) -> str:
    """The local stand-in for ``python:3.11.11-slim-bookworm`` as ``tag`` (rootfs built under ``folder``)."""
    rootfs = Path(folder) / "rootfs"
    subprocess.run(["debootstrap", "--variant=minbase", "--include=python3,python3-venv,ca-certificates", "bookworm",
                    str(rootfs), debian_mirror()], check=True, capture_output=True, text=True)
    subprocess.run(["chroot", str(rootfs), "python3", "-m", "venv", "/usr/local"], check=True)
    # as Debian's slim images: no documentation, manual pages, translations or package caches
    for folder in ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale", "var/cache/apt",
                   "var/lib/apt/lists"):
        for item in (rootfs / folder).glob("*"):
            shutil.rmtree(item) if item.is_dir() and not item.is_symlink() else item.unlink()
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    engine.podman("import", "--change", f"ENV PATH={PATH}", "--change", "ENV LANG=C.UTF-8",
                  "--change", 'CMD ["python3"]', "-", tag, stdin=tar.stdout)
    tar.wait()
    shutil.rmtree(rootfs)
    return tag


class Container:
    """A working container of ``image`` (``buildah from``), removed on exit of the ``with`` block."""

    def __init__(self, engine: Engine, image: str):
        self.engine = engine
        self.name = engine.buildah("from", "--pull-never", image).stdout.strip()
        merged = Path(engine.buildah("mount", self.name).stdout.strip())
        self.upper = merged.parent / "diff"  # the overlay's upper layer: what was written into the tree

    def __enter__(self) -> Container:
        return self

    def __exit__(self, *exc) -> None:
        self.engine.buildah("rm", self.name, check=False)

    def run(self, *command: str, user: str | None = None, volumes: dict | None = None, env: dict | None = None,
            check: bool = False) -> subprocess.CompletedProcess:
        """``buildah run`` of ``command``; ``volumes`` maps host paths to ``target`` or ``target:ro``."""
        args = ["run", "--isolation", "chroot"]
        if user:
            args += ["--user", user]
        for host, target in (volumes or {}).items():
            args += ["-v", f"{host}:{target}"]
        for name, value in (env or {}).items():
            args += ["--env", f"{name}={value}"]
        return self.engine.buildah(*args, self.name, "--", *command, check=check)

    def written(self) -> set[str]:
        """Paths (relative to ``/``) written into the container's own tree so far."""
        return {str(p.relative_to(self.upper)) for p in self.upper.rglob("*")}


def runtime_versions(distribution: str = "synthseg-bids") -> dict[str, str]:
    """Installed versions of ``distribution`` and of what it requires (no extras), recursively."""
    versions, todo = {}, [distribution]
    while todo:
        name = canonicalize_name(todo.pop())
        if name in versions:
            continue
        dist = importlib.metadata.distribution(name)
        versions[name] = dist.version
        for text in dist.requires or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return versions


if __name__ == "__main__":
    pins = runtime_versions()
    pins.pop("synthseg-bids")
    pins["tensorflow-cpu"] = pins["tensorflow"]  # the CPU images' flavour, same release
    sys.stdout.write(CONSTRAINTS_HEADER + "".join(f"{name}=={version}\n" for name, version in sorted(pins.items())))
