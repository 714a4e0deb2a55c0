"""The derivatives dataset: top-level files, per-scan sidecars and the done-check."""

from __future__ import annotations

import json
import logging
import os
from glob import escape as glob_escape
from pathlib import Path

from .. import __version__
from ..core.io import atomic_write_text, file_sha256
from ..core.labels import LabelTable, default_label_table
from .names import PARCELLATION_VARIANT, derivative_path

__all__ = [
    "BIDSIGNORE",
    "BIDS_VERSION",
    "DERIVATIVE_FILES",
    "parcellation_sidecar",
    "remove_stale_temporaries",
    "scan_is_done",
    "scan_sidecars",
    "write_derivatives_description",
]

LOGGER = logging.getLogger("synthseg_bids.bids")

#: BIDS version the derivatives declare.
BIDS_VERSION = "1.10.0"
#: Files in the derivatives folder that are not BIDS (ignored by the validator). Directories by bare
#: name (bids-validator 3 ignores ``group`` but not ``group/``); ``logs/`` is a BIDS directory already.
BIDSIGNORE = ["group", "*.html", "sub-*/figures", "*_volumes.tsv", "*_volumes.json"]
#: Every derivative of one scan as ``(suffix, extension, datatype, variant)``; the probseg pair only with
#: posteriors, the ``parc`` dseg pair only with SynthSeg's parcellation network.
DERIVATIVE_FILES: tuple[tuple[str, str, str, str], ...] = (
    ("dseg", ".nii.gz", "anat", ""), ("dseg", ".json", "anat", ""), ("volumes", ".tsv", "anat", ""),
    ("volumes", ".json", "anat", ""), ("dseg", ".png", "figures", ""), ("probseg", ".nii.gz", "anat", ""),
    ("probseg", ".json", "anat", ""), ("dseg", ".nii.gz", "anat", PARCELLATION_VARIANT),
    ("dseg", ".json", "anat", PARCELLATION_VARIANT),
)
#: Top-level sidecar of ``dseg.tsv`` (keys the validator recommends).
DSEG_TSV_SIDECAR = {
    "Description": "Look-up table of the label values of every _dseg.nii.gz in this dataset: FreeSurfer values, "
    "structure names, abbreviations and colours; row i is volume i of the _probseg.nii.gz files.",
    "SpatialReference": "Each segmentation is on the voxel grid of the scan it was computed from "
    "(the SpatialReference of its own sidecar).",
}


def write_derivatives_description(
    output_dir: Path,
    bids_dir: Path,
    container: tuple[str, str],
    label_table: LabelTable | None = None,
    parcellation_table: LabelTable | None = None,
) -> None:
    """``dataset_description.json``, ``dseg.tsv`` + ``dseg.json``, ``.bidsignore`` and ``README.md``.

    With ``parcellation_table`` (SynthSeg's parcellation network), its parcels (all but the
    background) follow the segmentation's rows in the one ``dseg.tsv``, which both label maps of a
    scan inherit; the first rows stay those of the segmentation, so row *i* is still volume *i*
    of the ``_probseg`` files.
    """
    generated = {"Name": "synthseg-bids", "Version": __version__,
                 "CodeURL": "https://github.com/synthseg-bids/synthseg-bids"}
    if container[0]:
        generated["Container"] = {"Type": container[0], **({"Tag": container[1]} if container[1] else {})}
    description = {
        "Name": "synthseg-bids segmentations",
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "derivative",
        "GeneratedBy": [generated],
        "SourceDatasets": [{"URL": Path(bids_dir).resolve().as_uri()}],
        "DatasetLinks": {"raw": Path(bids_dir).resolve().as_uri()},
    }
    raw_description = Path(bids_dir) / "dataset_description.json"
    try:
        raw = json.loads(raw_description.read_text())
        if raw.get("DatasetDOI"):
            description["SourceDatasets"][0]["DOI"] = raw["DatasetDOI"]
    except (OSError, ValueError):
        pass
    output_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(output_dir / "dataset_description.json", json.dumps(description, indent=2) + "\n")
    table = label_table or default_label_table()
    dseg_sidecar = dict(DSEG_TSV_SIDECAR)
    if parcellation_table is not None:
        table = LabelTable([*table.structures, *parcellation_table.structures[1:]])
        dseg_sidecar["Description"] += (
            f" Rows after the first {len(table) - len(parcellation_table) + 1} are the Desikan-Killiany parcels of "
            "the _desc-synthsegparc<contrast>_dseg.nii.gz files (SynthSeg's parcellation network).")
    table.write_dseg_tsv(output_dir / "dseg.tsv")
    atomic_write_text(output_dir / "dseg.json", json.dumps(dseg_sidecar, indent=2) + "\n")
    atomic_write_text(output_dir / ".bidsignore", "\n".join(BIDSIGNORE) + "\n")
    readme = output_dir / "README.md"
    if not readme.exists():
        atomic_write_text(
            readme,
            "# synthseg-bids derivatives\n\nSegmentations of the anatomical scans of the source dataset, "
            "written by synthseg-bids. Label values: dseg.tsv. Per-subject reports: sub-<label>.html.\n",
        )


def scan_sidecars(source_file: str | os.PathLike, results: dict, metadata: dict) -> tuple[dict, dict, dict]:
    """JSON sidecars of one scan's dseg, probseg and volumes table (parcellation: :func:`parcellation_sidecar`).

    Parameters
    ----------
    source_file : path-like
        The BIDS scan that was segmented.
    results : dict
        The SynthSeg interface's results (``qc``, ``label_table``, ``model``).
    metadata : dict
        Run provenance (``bids_dir``, ``Model``, ``ModelSHA256``, ``Config``, ``Version``...);
        all but ``bids_dir`` go into the volumes sidecar.

    Returns
    -------
    dseg_meta, probseg_meta, volumes_meta : dict
        ``volumes_meta`` carries everything :func:`scan_is_done` needs to decide whether
        a re-run may skip the scan: ``SourceFile`` (path, sha256, size, mtime_ns) and
        ``ModelSHA256``.
    """
    source = Path(source_file)
    stat = source.stat()
    bids_dir = metadata.get("bids_dir")
    try:
        relative = source.resolve().relative_to(Path(bids_dir).resolve()).as_posix() if bids_dir else source.name
        uri = f"bids:raw:{relative}"
    except ValueError:
        relative, uri = str(source), source.resolve().as_uri()
    sources = [uri]
    dseg_meta = {
        "Description": "Segmentation of the source scan into FreeSurfer structures (values: see dseg.tsv), "
        "on the source grid.",
        "Sources": sources,
        "SpatialReference": uri,
        "Manual": False,
    }
    labels = [r["name"] for r in results.get("label_table") or []]
    probseg_meta = {
        "Description": "Posterior probability of each structure; 4th-axis volume i is row i of dseg.tsv.",
        "Sources": sources,
        "SpatialReference": uri,
        "Labels": labels,
    }
    volumes_meta = {
        "Description": "Structure volumes in mm^3 and automated QC scores of the segmentation.",
        "Sources": sources,
        "SourceFile": {"path": relative, "sha256": file_sha256(source), "size": stat.st_size,
                       "mtime_ns": stat.st_mtime_ns},
        "QC": results.get("qc"),
        "Segmentation": results.get("segmentation"),
    }
    for key, value in metadata.items():
        if key != "bids_dir":
            volumes_meta[key] = value
    if results.get("model") and "Model" not in volumes_meta:
        volumes_meta["Model"] = results["model"]
    return dseg_meta, probseg_meta, volumes_meta


def parcellation_sidecar(dseg_meta: dict) -> dict:
    """Sidecar of the parcellation label map, from the segmentation's (:func:`scan_sidecars`)."""
    return {**dseg_meta, "Description": "Segmentation of the source scan into FreeSurfer structures with the "
            "cerebral cortex divided into Desikan-Killiany parcels by SynthSeg's parcellation network (values: "
            "see dseg.tsv), on the source grid."}


def scan_is_done(scan: str | Path, output_dir: Path, model_sha256: str, write_posteriors: bool,
                 parcellation: bool = False) -> bool:
    """Whether an earlier run finished this scan with the same input and model.

    True when the ``_volumes.json`` sidecar (written last) exists, records the same
    model sha256 (with SynthSeg's networks: of every selected file, so adding the
    parcellation or QC network changes it) and the same input file (size and mtime, or
    else sha256), and the label map, figure and (when asked for) the posteriors and the
    parcellation label map are present.
    """
    sidecar = derivative_path(scan, output_dir, "volumes", ".json")
    try:
        meta = json.loads(sidecar.read_text())
    except (OSError, ValueError):
        return False
    wanted = [derivative_path(scan, output_dir, "dseg", ".nii.gz"),
              derivative_path(scan, output_dir, "volumes", ".tsv"),
              derivative_path(scan, output_dir, "dseg", ".png", datatype="figures")]
    if write_posteriors:
        wanted.append(derivative_path(scan, output_dir, "probseg", ".nii.gz"))
    if parcellation:
        wanted.append(derivative_path(scan, output_dir, "dseg", ".nii.gz", variant=PARCELLATION_VARIANT))
    if not all(p.exists() for p in wanted) or meta.get("ModelSHA256") != model_sha256:
        return False
    source = meta.get("SourceFile", {})
    stat = Path(scan).stat()
    if source.get("size") == stat.st_size and source.get("mtime_ns") == stat.st_mtime_ns:
        return True
    if source.get("size") != stat.st_size:
        return False
    return source.get("sha256") == file_sha256(scan)


def remove_stale_temporaries(scan: str | Path, output_dir: Path) -> list[Path]:
    """Delete temporary files a killed earlier run left next to this scan's derivatives.

    Only the temporaries of the scan's own derivative names are touched
    (``.<final name>.<random>.tmp<ext>``, see :func:`~synthseg_bids.core.io.atomic_path`),
    so runs on other scans sharing ``output_dir`` are never disturbed. Returns the files removed.
    """
    removed = []
    for suffix, extension, datatype, variant in DERIVATIVE_FILES:
        final = derivative_path(scan, output_dir, suffix, extension, datatype=datatype, variant=variant)
        if final.parent.is_dir():
            for stale in final.parent.glob(f".{glob_escape(final.name)}.*.tmp*"):
                LOGGER.info("removing %s, left by an interrupted run", stale)
                stale.unlink(missing_ok=True)
                removed.append(stale)
    return removed
