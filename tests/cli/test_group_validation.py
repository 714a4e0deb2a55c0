"""After participant *and* group level, the derivatives pass the pinned BIDS validator (issue 20).

One participant run (example dataset at 20^3, tiny random-weight model, posteriors on), then the
group level with ``--reference-dir`` and ``--compare-dir`` tables, then ``bids-validator-deno``
(3.0.2, from the ``test`` extra) on the output. Each ``.bidsignore`` entry is checked on its own:
without it the validator must report exactly the files that the entry covers (matched here with
gitignore rules, independently of the validator), so no entry is dead and none hides too little.
"""

from __future__ import annotations

import fnmatch
import json
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from helpers import make_app_data

from synthseg_bids.cli.main import main

VALIDATOR = shutil.which("bids-validator-deno")
pytestmark = pytest.mark.skipif(VALIDATOR is None, reason="bids-validator-deno not installed (pip install '.[test]')")


def validate(folder: Path) -> tuple[int, list[tuple[str, str]]]:
    """Exit status and ``(code, location)`` of every error of the validator on ``folder``."""
    proc = subprocess.run([VALIDATOR, str(folder), "--format", "json"], capture_output=True, text=True, check=False)
    issues = json.loads(proc.stdout)["issues"]["issues"]
    return proc.returncode, sorted((i["code"], i.get("location", "")) for i in issues if i["severity"] == "error")


def gitignore_match(pattern: str, relpath: str) -> bool:
    """Whether a ``.bidsignore`` pattern covers ``relpath`` (gitignore rules, no negation).

    A pattern without ``/`` matches a file or directory name at any depth (and so everything
    below that directory); one with ``/`` is anchored at the root, ``*`` never crossing a ``/``.
    """
    parts = relpath.strip("/").split("/")
    if "/" not in pattern.rstrip("/"):
        return any(fnmatch.fnmatchcase(part, pattern.rstrip("/")) for part in parts)
    pat = pattern.strip("/").split("/")
    return len(parts) >= len(pat) and all(fnmatch.fnmatchcase(p, q) for p, q in zip(parts, pat))


CONTAINER_VARS = ("SYNTHSEG_BIDS_CONTAINER", "SYNTHSEG_BIDS_IMAGE", "APPTAINER_CONTAINER", "SINGULARITY_CONTAINER")


@pytest.fixture(scope="module")
def app_data(tmp_path_factory, tiny_model):
    return make_app_data(tmp_path_factory.mktemp("groupval"), tiny_model, shape=(20, 20, 20))


def run_app(data, out, level, *args):
    return main([str(data["bids"]), str(out), level, "--model", str(data["model"]), "--nprocs", "1",
                 "--inference-settings", str(data["fast"]), "-w", str(data["root"] / f"work_{out.name}"), *args])


@pytest.fixture(scope="module")
def derivatives(app_data):
    """Participant (as if in the GPU Docker image) then group with evaluation and comparison tables."""
    root, out = app_data["root"], app_data["root"] / "out"

    def app(level, *args):
        return run_app(app_data, out, level, *args)

    with pytest.MonkeyPatch.context() as mp:
        for var in CONTAINER_VARS:
            mp.delenv(var, raising=False)
        mp.setenv("SYNTHSEG_BIDS_CONTAINER", "docker-gpu")  # what the image built with VARIANT=gpu sets
        mp.setenv("SYNTHSEG_BIDS_IMAGE", "synthseg-bids:0.1.0-gpu")
        assert app("participant", "--write-posteriors") == 0
    reference, other = root / "manual", root / "other"
    reference.mkdir()
    other.mkdir()
    rng = np.random.default_rng(0)
    for dseg in sorted(out.rglob("*_desc-synthsegT1w_dseg.nii.gz")):
        img = nib.load(dseg)
        name = dseg.name.replace("_desc-synthsegT1w", "")
        nib.save(img, reference / name)
        noisy = np.asarray(img.dataobj).copy()
        noisy[rng.random(noisy.shape) < 0.05] = 0
        nib.save(nib.Nifti1Image(noisy, img.affine), other / name.replace("_dseg", "_T1w_other"))
    assert app("group", "--reference-dir", str(reference), "--compare-dir", str(other)) == 0
    return out


def test_group_output_has_the_evaluation_tables(derivatives):
    group = derivatives / "group"
    for name in ("volumes.tsv", "summary.tsv", "outliers.tsv", "evaluation_scores.tsv", "comparison.tsv"):
        assert (group / name).is_file(), name


def test_the_image_variant_is_recorded(derivatives):
    generated = json.loads((derivatives / "dataset_description.json").read_text())["GeneratedBy"][0]
    assert generated["Container"] == {"Type": "docker-gpu", "Tag": "synthseg-bids:0.1.0-gpu"}


def test_no_container_is_recorded_outside_the_image(app_data, monkeypatch):
    """A plain install records no container, even where ``/.dockerenv`` exists (as on some CI machines)."""
    for var in CONTAINER_VARS:
        monkeypatch.delenv(var, raising=False)
    out = app_data["root"] / "plain"
    assert run_app(app_data, out, "participant", "--participant-label", "02") == 0
    generated = json.loads((out / "dataset_description.json").read_text())["GeneratedBy"][0]
    assert "Container" not in generated


def test_participant_plus_group_output_passes_the_validator(derivatives):
    rc, errors = validate(derivatives)
    assert errors == []
    assert rc == 0


def test_every_bidsignore_entry_silences_exactly_its_files(derivatives, tmp_path):
    patterns = [ln for ln in (derivatives / ".bidsignore").read_text().splitlines() if ln.strip()]
    assert patterns, ".bidsignore is empty"
    files = [p.relative_to(derivatives).as_posix() for p in derivatives.rglob("*")
             if p.is_file() and p.name != ".bidsignore"]
    for pattern in patterns:
        covered = {f"/{f}" for f in files if gitignore_match(pattern, f)}
        assert covered, f"{pattern!r} matches no file of the output: a dead entry"
        # without this entry the validator reports the files that no other entry covers (group/report.html is
        # both in 'group' and '*.html')
        covered = {f for f in covered if not any(gitignore_match(o, f[1:]) for o in patterns if o != pattern)}
        copy = tmp_path / f"without_{len(list(tmp_path.iterdir()))}"
        shutil.copytree(derivatives, copy)
        (copy / ".bidsignore").write_text("".join(f"{p}\n" for p in patterns if p != pattern))
        rc, errors = validate(copy)
        reported = {loc for _, loc in errors if not loc.endswith("/")}
        assert rc != 0, f"without {pattern!r} the validator still passes"
        assert reported == covered, f"without {pattern!r}: reported {sorted(reported)}, covered {sorted(covered)}"
        shutil.rmtree(copy)


@pytest.mark.parametrize("pattern, good", [("group", True), ("group/", False), ("/group/", False),
                                           ("group/**", False), ("/group/**", False)])
def test_only_the_bare_directory_name_ignores_it(derivatives, tmp_path, pattern, good):
    """The validator's own rule, pinned: why ``.bidsignore`` says ``group`` (issue 20)."""
    copy = tmp_path / "out"
    shutil.copytree(derivatives, copy)
    others = [p for p in (copy / ".bidsignore").read_text().splitlines() if p.strip() and p != "group"]
    (copy / ".bidsignore").write_text("".join(f"{p}\n" for p in [*others, pattern]))
    rc, errors = validate(copy)
    assert (rc == 0 and not errors) is good, errors


def test_gitignore_match_on_known_cases():
    assert gitignore_match("group", "group/volumes.tsv")
    assert not gitignore_match("group", "groups/volumes.tsv")
    assert gitignore_match("*.html", "sub-01.html") and gitignore_match("*.html", "a/b.html")
    assert gitignore_match("sub-*/figures", "sub-01/figures/x.png")
    assert not gitignore_match("sub-*/figures", "sub-01/anat/figures.png")
    assert not gitignore_match("sub-*/figures", "x/sub-01/figures/a.png")
    assert gitignore_match("*_volumes.tsv", "sub-01/anat/sub-01_desc-x_volumes.tsv")
