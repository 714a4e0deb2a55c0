"""Writing one scan's results into the BIDS derivatives folder."""

from __future__ import annotations

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from ..interfaces.bids import DerivativesDataSink

__all__ = ["init_derivatives_wf", "scan_provenance"]


def init_derivatives_wf(
    *,
    output_dir: str,
    write_posteriors: bool = False,
    metadata: dict | None = None,
    name: str = "ds_segmentation_wf",
):
    """Store one scan's segmentation outputs under their BIDS derivative names.

    Names follow :mod:`synthseg_bids.interfaces.bids` (``<source entities>_desc-synthseg<contrast>_<suffix>``).
    The ``_volumes.json`` sidecar is written last: it records the input file's sha256,
    size and mtime, and the model's sha256, and is what a re-run checks to skip a scan.

    Workflow Graph
        .. workflow::
            :graph2use: orig
            :simple_form: yes

            from synthseg_bids.workflows.outputs import init_derivatives_wf
            wf = init_derivatives_wf(output_dir=".")

    Parameters
    ----------
    output_dir : str
        Derivatives folder.
    write_posteriors : bool
        Also store the 4D ``_probseg``.
    metadata : dict, optional
        Run provenance merged into the volumes sidecar (``bids_dir``, ``Model``,
        ``ModelSHA256``, ``Config``, ``Version``...).
    name : str
        Workflow name.

    Inputs
    ------
    source_file
        The BIDS scan that was segmented.
    out_dseg, out_probseg, out_volumes, out_results, out_figure
        Outputs of :func:`~synthseg_bids.workflows.segmentation.init_segmentation_wf`.

    Outputs
    -------
    dseg, probseg, volumes, figure
        The derivative files written.
    """
    metadata = dict(metadata or {})
    workflow = pe.Workflow(name=name)
    fields = ["source_file", "out_dseg", "out_probseg", "out_volumes", "out_results", "out_figure"]
    inputnode = pe.Node(niu.IdentityInterface(fields=fields), name="inputnode")
    outputnode = pe.Node(niu.IdentityInterface(fields=["dseg", "probseg", "volumes", "figure"]), name="outputnode")

    provenance = pe.Node(
        niu.Function(function=scan_provenance, output_names=["dseg_meta", "probseg_meta", "volumes_meta"]),
        name="provenance",
        run_without_submitting=True,
    )
    provenance.inputs.metadata = metadata

    def sink(node_name, suffix, datatype="anat"):
        return pe.Node(
            DerivativesDataSink(base_directory=str(output_dir), suffix=suffix, datatype=datatype),
            name=node_name,
            run_without_submitting=True,
        )

    ds_dseg = sink("ds_dseg", "dseg")
    ds_figure = sink("ds_figure", "dseg", datatype="figures")
    ds_volumes = sink("ds_volumes", "volumes")
    wait = pe.Node(niu.Merge(3), name="wait", run_without_submitting=True)

    workflow.connect([
        (inputnode, provenance, [("source_file", "source_file"), ("out_results", "results_file")]),
        (inputnode, ds_dseg, [("source_file", "source_file"), ("out_dseg", "in_file")]),
        (provenance, ds_dseg, [("dseg_meta", "meta_dict")]),
        (inputnode, ds_figure, [("source_file", "source_file"), ("out_figure", "in_file")]),
        (inputnode, ds_volumes, [("source_file", "source_file"), ("out_volumes", "in_file")]),
        (provenance, ds_volumes, [("volumes_meta", "meta_dict")]),
        (ds_dseg, wait, [("out_file", "in1")]),
        (ds_figure, wait, [("out_file", "in2")]),
        (wait, ds_volumes, [("out", "depends_on")]),
        (ds_dseg, outputnode, [("out_file", "dseg")]),
        (ds_figure, outputnode, [("out_file", "figure")]),
        (ds_volumes, outputnode, [("out_file", "volumes")]),
    ])  # fmt: skip
    if write_posteriors:
        ds_probseg = sink("ds_probseg", "probseg")
        workflow.connect([
            (inputnode, ds_probseg, [("source_file", "source_file"), ("out_probseg", "in_file")]),
            (provenance, ds_probseg, [("probseg_meta", "meta_dict")]),
            (ds_probseg, wait, [("out_file", "in3")]),
            (ds_probseg, outputnode, [("out_file", "probseg")]),
        ])  # fmt: skip
    else:
        wait.inputs.in3 = []
    return workflow


def scan_provenance(source_file, results_file, metadata):
    """JSON sidecars of one scan's dseg, probseg and volumes table.

    ``volumes_meta`` carries everything needed to decide whether a re-run may skip the
    scan: ``SourceFile`` (path, sha256, size, mtime_ns) and ``ModelSHA256``.
    """
    import hashlib
    import json
    from pathlib import Path

    source = Path(source_file)
    stat = source.stat()
    digest = hashlib.sha256()
    with open(source, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    bids_dir = metadata.get("bids_dir")
    try:
        relative = source.resolve().relative_to(Path(bids_dir).resolve()).as_posix() if bids_dir else source.name
        uri = f"bids:raw:{relative}"
    except ValueError:
        relative, uri = str(source), source.resolve().as_uri()
    results = json.loads(Path(results_file).read_text())
    sources = [uri]
    dseg_meta = {
        "Description": "Segmentation of the source scan into FreeSurfer structures (values: see dseg.tsv), "
        "on the source grid.",
        "Sources": sources,
        "Manual": False,
    }
    labels = [r["name"] for r in results.get("label_table") or []]
    probseg_meta = {
        "Description": "Posterior probability of each structure; 4th-axis volume i is row i of dseg.tsv.",
        "Sources": sources,
        "Labels": labels,
    }
    volumes_meta = {
        "Description": "Structure volumes in mm^3 and automated QC scores of the segmentation.",
        "Sources": sources,
        "SourceFile": {"path": relative, "sha256": digest.hexdigest(), "size": stat.st_size,
                       "mtime_ns": stat.st_mtime_ns},
        "QC": results.get("qc"),
        "Units": "mm^3",
    }
    for key, value in metadata.items():
        if key != "bids_dir":
            volumes_meta[key] = value
    if results.get("model") and "Model" not in volumes_meta:
        volumes_meta["Model"] = results["model"]
    return dseg_meta, probseg_meta, volumes_meta
