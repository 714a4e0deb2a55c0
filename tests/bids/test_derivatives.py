"""The derivatives dataset: top-level files, sidecars, the done-check."""

from __future__ import annotations

import hashlib
import json
import os

from synthseg_bids.bids import derivative_path, remove_stale_temporaries, scan_is_done, scan_sidecars
from synthseg_bids.bids import write_derivatives_description


def test_top_level_files(tmp_path):
    bids, out = tmp_path / "bids", tmp_path / "out"
    bids.mkdir()
    (bids / "dataset_description.json").write_text('{"Name": "raw", "DatasetDOI": "doi:10.1/x"}')
    write_derivatives_description(out, bids, ("", ""))
    description = json.loads((out / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative" and "Container" not in description["GeneratedBy"][0]
    assert description["SourceDatasets"] == [{"URL": bids.resolve().as_uri(), "DOI": "doi:10.1/x"}]
    lut = json.loads((out / "dseg.json").read_text())
    assert lut["Description"] and lut["SpatialReference"]  # what the validator recommends for dseg.tsv
    assert (out / "dseg.tsv").read_text().splitlines()[0].split("\t")[:2] == ["index", "name"]
    write_derivatives_description(out, bids, ("docker-cpu", "synthseg-bids:0.1.0"))
    generated = json.loads((out / "dataset_description.json").read_text())["GeneratedBy"][0]
    assert generated["Container"] == {"Type": "docker-cpu", "Tag": "synthseg-bids:0.1.0"}


def _finished_scan(tmp_path, model_sha="m" * 64):
    bids, out = tmp_path / "bids", tmp_path / "out"
    scan = bids / "sub-01" / "anat" / "sub-01_T1w.nii.gz"
    scan.parent.mkdir(parents=True)
    scan.write_bytes(b"scan bytes")
    dseg, probseg, volumes = scan_sidecars(scan, {"qc": {"flag": False}, "label_table": [{"name": "a"}]},
                                           {"bids_dir": str(bids), "ModelSHA256": model_sha})
    for suffix, ext, datatype in (("dseg", ".nii.gz", "anat"), ("volumes", ".tsv", "anat"),
                                  ("dseg", ".png", "figures")):
        path = derivative_path(scan, out, suffix, ext, datatype=datatype)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    derivative_path(scan, out, "volumes", ".json").write_text(json.dumps(volumes))
    return scan, out, dseg, probseg, volumes


def test_sidecars_record_the_source(tmp_path):
    scan, out, dseg, probseg, volumes = _finished_scan(tmp_path)
    uri = "bids:raw:sub-01/anat/sub-01_T1w.nii.gz"
    assert dseg["Sources"] == [uri] and dseg["SpatialReference"] == uri and probseg["SpatialReference"] == uri
    assert probseg["Labels"] == ["a"]
    assert volumes["SourceFile"]["sha256"] == hashlib.sha256(b"scan bytes").hexdigest()
    assert volumes["SourceFile"]["size"] == 10 and volumes["ModelSHA256"] == "m" * 64 and "bids_dir" not in volumes


def test_done_check(tmp_path):
    scan, out, *_ = _finished_scan(tmp_path)
    assert scan_is_done(scan, out, "m" * 64, write_posteriors=False)
    assert not scan_is_done(scan, out, "n" * 64, write_posteriors=False)  # another model
    assert not scan_is_done(scan, out, "m" * 64, write_posteriors=True)  # no probseg
    stat = scan.stat()
    os.utime(scan, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # touched, same bytes: sha256 decides
    assert scan_is_done(scan, out, "m" * 64, write_posteriors=False)
    scan.write_bytes(b"other bytes")  # same size, other content
    assert not scan_is_done(scan, out, "m" * 64, write_posteriors=False)
    derivative_path(scan, out, "dseg", ".png", datatype="figures").unlink()
    scan.write_bytes(b"scan bytes")
    assert not scan_is_done(scan, out, "m" * 64, write_posteriors=False)


def test_stale_temporaries_of_this_scan_only_are_removed(tmp_path):
    scan, out, *_ = _finished_scan(tmp_path)
    final = derivative_path(scan, out, "dseg", ".nii.gz")
    mine = final.parent / f".{final.name}.abcd1234.tmp.nii.gz"
    other = final.parent / ".sub-01_acq-x_desc-synthsegT1w_dseg.nii.gz.abcd1234.tmp.nii.gz"
    mine.write_bytes(b"")
    other.write_bytes(b"")
    assert remove_stale_temporaries(scan, out) == [mine]
    assert not mine.exists() and other.exists()
