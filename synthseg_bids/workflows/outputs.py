"""Writing one scan's results into the BIDS derivatives folder."""

from __future__ import annotations

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from ..interfaces.bids import PARCELLATION_VARIANT, DerivativesDataSink, ScanSidecars
from ..reports.figures import THUMBNAIL_VARIANT

__all__ = ["LAST_SINK", "init_derivatives_wf"]

#: The node storing the volumes table and its sidecar, after every other derivative of the scan:
#: when it finishes, the scan is done (the BIDS-App's progress lines count these).
LAST_SINK = "ds_volumes"


def init_derivatives_wf(
    *,
    output_dir: str,
    write_posteriors: bool = False,
    parcellation: bool = False,
    metadata: dict | None = None,
    name: str = "ds_segmentation_wf",
):
    """Store one scan's segmentation outputs under their BIDS derivative names.

    Names follow :mod:`synthseg_bids.bids.names` (``<source entities>_desc-synthseg<contrast>_<suffix>``).
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
    parcellation : bool
        Also store the parcellation label map (SynthSeg's parcellation network) as
        ``desc-synthsegparc<contrast>_dseg``.
    metadata : dict, optional
        Run provenance merged into the volumes sidecar (``bids_dir``, ``Model``,
        ``ModelSHA256``, ``Config``, ``Version``...).
    name : str
        Workflow name.

    Inputs
    ------
    source_file
        The BIDS scan that was segmented.
    out_dseg, out_probseg, out_parc_dseg, out_volumes, out_results, out_figure, out_thumbnail
        Outputs of :func:`~synthseg_bids.workflows.segmentation.init_segmentation_wf`.

    Outputs
    -------
    dseg, probseg, parc_dseg, volumes, figure, thumbnail
        The derivative files written (the thumbnail: ``figures/<entities>_desc-synthsegthumb<contrast>_dseg.png``).
    """
    metadata = dict(metadata or {})
    workflow = pe.Workflow(name=name)
    fields = ["source_file", "out_dseg", "out_probseg", "out_parc_dseg", "out_volumes", "out_results", "out_figure",
              "out_thumbnail"]
    inputnode = pe.Node(niu.IdentityInterface(fields=fields), name="inputnode")
    outputnode = pe.Node(niu.IdentityInterface(fields=["dseg", "probseg", "parc_dseg", "volumes", "figure", "thumbnail"]),
                         name="outputnode")

    provenance = pe.Node(ScanSidecars(), name="provenance", run_without_submitting=True)
    provenance.inputs.metadata = metadata

    def sink(node_name, suffix, datatype="anat", variant=""):
        return pe.Node(
            DerivativesDataSink(base_directory=str(output_dir), suffix=suffix, datatype=datatype, variant=variant),
            name=node_name,
            run_without_submitting=True,
        )

    ds_dseg = sink("ds_dseg", "dseg")
    ds_figure = sink("ds_figure", "dseg", datatype="figures")
    ds_thumbnail = sink("ds_thumbnail", "dseg", datatype="figures", variant=THUMBNAIL_VARIANT)
    ds_volumes = sink(LAST_SINK, "volumes")
    wait = pe.Node(niu.Merge(5), name="wait", run_without_submitting=True)

    workflow.connect([
        (inputnode, provenance, [("source_file", "source_file"), ("out_results", "in_results")]),
        (inputnode, ds_dseg, [("source_file", "source_file"), ("out_dseg", "in_file")]),
        (provenance, ds_dseg, [("dseg_meta", "meta_dict")]),
        (inputnode, ds_figure, [("source_file", "source_file"), ("out_figure", "in_file")]),
        (inputnode, ds_volumes, [("source_file", "source_file"), ("out_volumes", "in_file")]),
        (provenance, ds_volumes, [("volumes_meta", "meta_dict")]),
        (ds_dseg, wait, [("out_file", "in1")]),
        (ds_figure, wait, [("out_file", "in2")]),
        (inputnode, ds_thumbnail, [("source_file", "source_file"), ("out_thumbnail", "in_file")]),
        (ds_thumbnail, wait, [("out_file", "in5")]),
        (ds_thumbnail, outputnode, [("out_file", "thumbnail")]),
        (wait, ds_volumes, [("out", "depends_on")]),
        (ds_dseg, outputnode, [("out_file", "dseg")]),
        (ds_figure, outputnode, [("out_file", "figure")]),
        (ds_volumes, outputnode, [("out_file", "volumes")]),
    ])  # fmt: skip
    # the optional derivatives: (wanted, field, sink node, suffix, variant), in the wait slots 3 and 4
    optional = (
        (write_posteriors, "probseg", "ds_probseg", "probseg", ""),
        (parcellation, "parc_dseg", "ds_parc_dseg", "dseg", PARCELLATION_VARIANT),
    )
    for slot, (wanted, field, node_name, suffix, variant) in enumerate(optional, start=3):
        if not wanted:
            setattr(wait.inputs, f"in{slot}", [])
            continue
        ds_optional = sink(node_name, suffix, variant=variant)
        workflow.connect([
            (inputnode, ds_optional, [("source_file", "source_file"), (f"out_{field}", "in_file")]),
            (provenance, ds_optional, [(f"{field}_meta", "meta_dict")]),
            (ds_optional, wait, [("out_file", f"in{slot}")]),
            (ds_optional, outputnode, [("out_file", field)]),
        ])  # fmt: skip
    return workflow

