"""Methods text and citations, built from what a workflow was configured to do or what ran.

One small function per choice (:data:`DESCRIBERS`) reads a *record*: a dict shaped like
the ``Segmentation`` entry of a scan's ``_volumes.json`` sidecar, ``{"settings": {...},
"model": {...}, "backend": ..., "device": ...}``. A workflow's record holds only what it
was configured with (``settings``: the :class:`~synthseg_bids.inference.InferenceSettings`
fields); a scan's record also says what ran (backend, device). A describer returns ``""``
when its part of the record is absent, so the same functions write a workflow's
``__desc__`` before the run, the subject report's methods after it, and ``CITATION.md``.
A new setting is described by adding one function to :data:`DESCRIBERS`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from ..core.io import atomic_write_text

__all__ = [
    "BIBTEX",
    "DESCRIBERS",
    "REFERENCES",
    "closing_text",
    "describe_record",
    "intro_text",
    "model_card",
    "workflow_description",
    "write_citation",
]

_DATA = Path(__file__).resolve().parents[1] / "data"

#: The references of the methods text: (key, plain-text reference) in citation order.
REFERENCES = (
    ("billot2023synthseg", ("Billot B, Greve DN, Puonti O, et al. SynthSeg: Segmentation of brain MRI scans of any "
     "contrast and resolution without retraining. Medical Image Analysis 86:102789 (2023). "
     "doi:10.1016/j.media.2023.102789")),
    ("gorgolewski2011nipype", ("Gorgolewski K, et al. Nipype: a flexible, lightweight and extensible neuroimaging "
     "data processing framework in Python. Front. Neuroinform. 5:13 (2011). doi:10.3389/fninf.2011.00013")),
    ("yarkoni2019pybids", ("Yarkoni T, et al. PyBIDS: Python tools for BIDS datasets. JOSS 4(40):1294 (2019). "
     "doi:10.21105/joss.01294")),
)
#: BibTeX entries of :data:`REFERENCES` (same keys).
BIBTEX = """@article{billot2023synthseg,
  author = {Billot, Benjamin and Greve, Douglas N. and Puonti, Oula and Thielscher, Axel and Van Leemput, Koen and Fischl, Bruce and Dalca, Adrian V. and Iglesias, Juan Eugenio},
  title = {{SynthSeg}: Segmentation of brain {MRI} scans of any contrast and resolution without retraining},
  journal = {Medical Image Analysis},
  volume = {86},
  pages = {102789},
  year = {2023},
  doi = {10.1016/j.media.2023.102789}
}

@article{gorgolewski2011nipype,
  author = {Gorgolewski, Krzysztof and Burns, Christopher D. and Madison, Cindee and Clark, Dav and Halchenko, Yaroslav O. and Waskom, Michael L. and Ghosh, Satrajit S.},
  title = {Nipype: a flexible, lightweight and extensible neuroimaging data processing framework in {Python}},
  journal = {Frontiers in Neuroinformatics},
  volume = {5},
  pages = {13},
  year = {2011},
  doi = {10.3389/fninf.2011.00013}
}

@article{yarkoni2019pybids,
  author = {Yarkoni, Tal and Markiewicz, Christopher J. and de la Vega, Alejandro and Gorgolewski, Krzysztof J. and Salo, Taylor and Halchenko, Yaroslav O. and McNamara, Quinten and DeStasio, Krista and Poline, Jean-Baptiste and Petrov, Dmitry and Hayot-Sasson, Val{\\'e}rie and Nielson, Dylan M. and Carlin, Johan and Kiar, Gregory and Whitaker, Kirstie and DuPre, Elizabeth and Wagner, Adina and Tirrell, Lee S. and Jas, Mainak and Hanke, Michael and Poldrack, Russell A. and Esteban, Oscar and Appelhoff, Stefan and Holdgraf, Chris and Staden, Isla and Thirion, Bertrand and Kleinschmidt, Dave F. and Lee, John A. and Visconti di Oleggio Castello, Matteo and Notter, Michael P. and Blair, Ross},
  title = {{PyBIDS}: Python tools for {BIDS} datasets},
  journal = {Journal of Open Source Software},
  volume = {4},
  number = {40},
  pages = {1294},
  year = {2019},
  doi = {10.21105/joss.01294}
}
"""

_POSTPROCESS = {
    "full": "each structure group was reduced to its largest connected component",
    "brain": "only the largest connected component of the whole brain was kept",
    "none": "no connected-component clean-up was applied",
}
_BACKENDS = {"tensorflow": "TensorFlow", "jax": "JAX"}


def _named(name: str, version: str | None) -> str:
    """``"Nipype 1.10.0"``, or just the name when the version is unknown."""
    return f"{name} {version}" if version and version != "unknown" else name


def describe_preprocessing(record: dict) -> str:
    """Reorientation, resampling and intensity scaling."""
    settings = record.get("settings")
    if settings is None:
        return ""
    resolution = (record.get("model") or {}).get("resolution_mm", 1.0)
    low, high = settings.get("percentiles", (0.5, 99.5))
    text = (f"Each scan was reoriented to RAS, resampled to {resolution:g} mm isotropic voxels where its voxels "
            f"differ from that (cubic spline), and its intensities were rescaled to [0, 1] between their {low:g}th "
            f"and {high:g}th percentiles")
    if settings.get("intensity_clip"):
        clip_low, clip_high = settings["intensity_clip"]
        text += f", after clipping intensities to [{clip_low:g}, {clip_high:g}]"
    return text + "."


def describe_execution(record: dict) -> str:
    """The network, and the Keras backend and device it ran on (only in a record of what ran)."""
    if not record.get("backend"):
        return ""
    model = record.get("model") or {}
    network = ""
    if record.get("describe_network", True) and model.get("n_levels"):
        network = f" (a {model['n_levels']}-level U-Net with {model['base_features']} base features)"
    backend = _BACKENDS.get(record["backend"], record["backend"])
    device = {"gpu": "a GPU", "cpu": "the CPU"}.get(record.get("device"), record.get("device") or "an unknown device")
    return (f"The network{network} ran with {_named('Keras', record.get('keras_version'))} on "
            f"{_named(backend, record.get('backend_version'))} on {device}.")


def describe_flip(record: dict) -> str:
    """Test-time left/right flip augmentation."""
    settings = record.get("settings")
    if settings is None:
        return ""
    if settings.get("flip", True):
        return ("The posteriors of the scan and of its left/right-flipped copy (flipped back, left and right labels "
                "swapped) were averaged (test-time augmentation).")
    return "Test-time left/right flip augmentation was off."


def describe_precision(record: dict) -> str:
    """The network's arithmetic: the precision that ran (a record of what ran), else the one configured."""
    ran = record.get("precision")
    if ran is None:
        configured = (record.get("settings") or {}).get("precision")
        if configured is None:
            return ""
        if configured == "auto":
            return ("The network computed in bfloat16 where the device has native bfloat16 arithmetic, in float32 "
                    "elsewhere.")
        ran = configured
    if ran == "bfloat16":
        return ("The network computed in bfloat16 (Keras mixed precision: float32 weights and posteriors, bfloat16 "
                "arithmetic).")
    return "The network computed in float32."


def describe_ensemble(record: dict) -> str:
    """Test-time ensemble of shifted windows."""
    settings = record.get("settings")
    if settings is None or int(settings.get("shifts", 1)) <= 1:
        return ""
    shifts = int(settings["shifts"])
    return (f"The posteriors were averaged over {shifts} copies of the network's input window shifted by "
            "fractions of the network's size multiple along every axis (a test-time ensemble over the phases of the "
            "U-Net's pooling grid)" + (", each with its flipped copy." if settings.get("flip", True) else "."))


def describe_postprocessing(record: dict) -> str:
    """Posterior smoothing, connected-component clean-up, and the grid of the label map."""
    settings = record.get("settings")
    if settings is None:
        return ""
    sigma = settings.get("smoothing_sigma", 0.5)
    smoothing = f"smoothed (Gaussian, sigma {sigma:g} voxels), " if sigma else ""
    n_labels = (record.get("model") or {}).get("n_labels")
    labels = f"; it has {n_labels} labels ({n_labels - 1} structures and the background)" if n_labels else ""
    return (f"Posteriors were {smoothing}{_POSTPROCESS.get(settings.get('postprocess', 'full'), 'post-processed')}, "
            "and they were resampled onto the scan's own grid before the label map was taken, so the segmentation "
            f"has the scan's shape and orientation{labels}.")


#: The describers, in the order of the methods paragraph (each: record -> sentence or "").
DESCRIBERS: tuple[Callable[[dict], str], ...] = (
    describe_preprocessing,
    describe_execution,
    describe_precision,
    describe_flip,
    describe_ensemble,
    describe_postprocessing,
)


def describe_record(record: dict) -> str:
    """The sentences of every describer for one record, joined."""
    return " ".join(text for text in (describe(record) for describe in DESCRIBERS) if text)


def model_card(sha256: str | None) -> dict | None:
    """Description and measured accuracy of the shipped model, when ``sha256`` is its hash.

    ``synthseg_bids/data/default_model_card.json`` holds the figures of the README's
    "The shipped model" section for that exact file; any other model has no card.
    """
    card = json.loads((_DATA / "default_model_card.json").read_text())
    return card if sha256 and sha256 == card["sha256"] else None


def intro_text(version: str, shas: Iterable[str], steps_trained: int | None = None) -> str:
    """The opening sentences: the tool, the method and the model (its card when it is the shipped one)."""
    shas = sorted(set(shas))
    text = [
        (f"Anatomical scans were segmented with synthseg-bids {version}, an implementation of SynthSeg (Billot et "
        "al., 2023), which segments brain MRI scans of any contrast and resolution with a 3D U-Net trained only on "
        "synthetic images generated from label maps with randomised contrast, resolution, bias field and "
        "deformation.")
    ]
    card = model_card(shas[0]) if len(shas) == 1 else None
    if card:
        text.append(f"The model was the {card['name']} {card['version']} (sha256 {card['sha256']}): "
                    f"{card['description']}")
    elif shas:
        trained = f", trained for {steps_trained:,} steps" if steps_trained else ""
        text.append(f"The model file had sha256 {', '.join(shas)}{trained}.")
    return " ".join(text)


def closing_text(thresholds: dict | None, versions: dict | None) -> str:
    """Volumes, QC rule and the software that ran the workflows."""
    versions = versions or {}
    text = ("Structure volumes (mm\u00b3) are the sums of the structures' posterior probabilities times the voxel "
            "volume. Automated quality control used the segmentation's own posteriors")
    if thresholds:
        rules = [f"{kind} below {float(value):.2f}" for kind, value in sorted(thresholds.items())]
        text += f"; a scan was flagged when a structure group had a {' or a '.join(rules)}"
    return text + (f". Workflows were built with {_named('Nipype', versions.get('nipype'))} (Gorgolewski et al., "
                   f"2011) and the input dataset was queried with {_named('PyBIDS', versions.get('pybids'))} "
                   "(Yarkoni et al., 2019).")


def workflow_description(workflow) -> str:
    """The methods text of a Nipype workflow: its ``__desc__``, its nested workflows' (in execution order),
    then its ``__postdesc__`` (niworkflows' convention), each text once."""
    import networkx as nx

    texts: list[str] = []

    def add(text: str) -> None:
        if text and text not in texts:
            texts.append(text)

    def visit(wf) -> None:
        add(getattr(wf, "__desc__", ""))
        order = nx.lexicographical_topological_sort(wf._graph, key=lambda node: node.name)
        for child in order:
            if hasattr(child, "_graph"):  # a nested workflow
                visit(child)
        add(getattr(wf, "__postdesc__", ""))

    visit(workflow)
    return "\n\n".join(texts)


def write_citation(log_dir: str | os.PathLike, text: str) -> tuple[Path, Path]:
    """Write ``<log_dir>/CITATION.md`` (methods text and references) and ``CITATION.bib``."""
    log_dir = Path(log_dir)
    references = "\n".join(f"- {reference}" for _, reference in REFERENCES)
    markdown = (f"# Methods\n\n{text.strip()}\n\n## References\n\n{references}\n\n"
                "BibTeX entries of these references: `CITATION.bib`.\n")
    return atomic_write_text(log_dir / "CITATION.md", markdown), atomic_write_text(log_dir / "CITATION.bib", BIBTEX)
