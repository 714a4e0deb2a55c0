"""``synthseg-bids evaluate-model``: measure a model (default: the shipped one); the recipe behind docs/model/.

Four measurements, each a ``--stages`` entry:

``curve``
    Dice-vs-training-step of checkpoints (default: the 4 exported checkpoints of the shipped
    run in ``.devdata/shipped_run``) on synthetic images generated from the label maps with a
    seed that training never used (training used seed 0), with the training settings (160^3
    crops, fully random contrast, deformation, random resolution: SynthSeg's generator
    defaults) and the generation spec of ``labels_classes_priors/generation_classes.npy``.
    The network sees the whole 160^3 image (no pre/post-processing:
    :func:`synthseg_bids.training.validate_checkpoints`). Writes ``validation_dice.tsv`` and
    ``dice_vs_step.png``.
    CAVEAT: there is no held-out label map (all 15 maps were used for training): unseen
    images, *seen* anatomies.

``contrast``
    The model through the real prediction pipeline (:meth:`Segmenter.segment` of the image
    saved as NIfTI with its affine; default :class:`InferenceSettings`) on images generated
    without spatial deformation, flip or random crop (centred ``--contrast-shape`` window of
    the RAS label map, so the whole cerebrum is in the field of view), for 3 contrasts x 2
    resolutions:

    - ``t1``: normal priors ``prior_means_t1.npy`` / ``prior_stds_t1.npy`` indexed by
      ``generation_classes_contrast_specific.npy`` (SynthSeg's T1 priors);
    - ``t2``: the same priors with the means of the brain classes replaced by T2-like values
      (``t2_class_means`` of the settings: CSF bright, grey > white, pallidum dark;
      extra-cerebral classes and the prior standard deviations kept from the T1 priors);
    - ``random``: fully random contrast (uniform priors U(25, 225) for the means, U(5, 25)
      for the stds, per generation class of ``generation_classes.npy``);

    each at ``1mm`` (the generator's acquisition blur of a 1 mm scan, sigma 0.5 voxel) and
    ``5mm``: thick axial slices, ``data_res = thickness = (1, 1, 5)``: the generator blurs
    along z (sigma 0.75 * 5 voxels) and samples every 5th slice; the image actually
    written is those slices, a 1 x 1 x 5 mm volume (z extent a multiple of 5 so that the
    samples fall on 1 mm voxels 0, 5, 10, ...). Scored twice: on the 5 mm input grid
    (``grid=input``: ``result.labels`` vs the label map at the acquired slice centres,
    i.e. nearest neighbour) and on the 1 mm grid (``grid=1mm``: the pipeline's conformed
    1 mm labels, an exact integer shift of the generation grid, vs the 1 mm label map).
    Bias field, gamma and random background stay on (SynthSeg defaults). Writes
    ``contrast_resolution_dice.tsv`` (condition x structure, averaged over images),
    ``contrast_resolution_dice_per_image.tsv`` and ``synthetic_examples.png``.

``mni``
    The MNI152 T1 (nilearn's bundled 1 mm template) segmented with default settings;
    grouped Dice against nilearn's WM and GM probability maps thresholded at 0.5
    (``wm_labels``, ``gm_labels`` of the settings); ``mni152_dice.tsv`` and ``mni152_overlay.png``.

Timings are those of this CPU (``result.timings``); for peak memory use
``benchmarks/bench_inference.py``.

Seeds, image counts and shapes, the T2-like class means and the MNI label groups are the
evaluation settings (:class:`ModelEvaluationSettings`), read from ``--settings`` (default:
the shipped recipe ``evaluate_model``, ``workflows/evaluate_model.toml`` in a source
checkout); ``--seed``, ``--n-curve-images``, ``--curve-shape``, ``--n-contrast-images`` and
``--contrast-shape`` override them.

Usage (from the repository root, where the default data, checkpoint and output folders are)::

    synthseg-bids evaluate-model                                  # everything
    synthseg-bids evaluate-model --stages curve --n-curve-images 3
    synthseg-bids evaluate-model --quick --out-dir /tmp/evalq     # plumbing check
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..core.io import write_table
from ..core.settings import Settings, SettingsError
from ..generator.scans import T2_CLASS_MEANS
from .arguments import CommandParser, positive_int

__all__ = ["CONTRASTS", "PROG", "RESOLUTIONS", "STAGES", "ModelEvaluationSettings", "build_parser", "main"]

PROG = "synthseg-bids evaluate-model"
logger = logging.getLogger("synthseg_bids.evaluate_model")

CONTRASTS = ("t1", "t2", "random")
RESOLUTIONS = ("1mm", "5mm")
STAGES = ("curve", "contrast", "mni")


#: Default T2-like means of the contrast-specific classes (TOML keys are strings).
_T2_CLASS_MEANS = {str(k): v for k, v in T2_CLASS_MEANS.items()}


@dataclass(frozen=True)
class ModelEvaluationSettings(Settings):
    """What ``evaluate-model`` measures (the defaults are the shipped recipe ``evaluate_model.toml``).

    Parameters
    ----------
    seed
        Generator seed of the synthetic test images (training used 0); the contrast stage
        derives one seed per condition from it.
    n_curve_images, curve_shape
        Synthetic validation images of the Dice-vs-step curve and their shape (voxels).
    n_contrast_images, contrast_shape
        Images per contrast/resolution condition and the RAS window of the label maps
        (z a multiple of 5: 5 mm slices on 1 mm voxels).
    t2_class_means
        T2-like mean (row 0 of the prior means) of generation classes of
        ``generation_classes_contrast_specific.npy``, class number (a string: TOML keys) ->
        mean; the other classes keep SynthSeg's T1 priors.
    wm_labels, gm_labels
        FreeSurfer labels grouped as white and grey matter on the MNI152 template.
    """

    seed: int = 20240917
    n_curve_images: int = 4
    curve_shape: tuple[int, int, int] = (160, 160, 160)
    n_contrast_images: int = 2
    contrast_shape: tuple[int, int, int] = (160, 176, 160)
    t2_class_means: dict = field(default_factory=lambda: dict(_T2_CLASS_MEANS))
    wm_labels: tuple[int, ...] = (2, 41, 7, 46)
    gm_labels: tuple[int, ...] = (3, 42, 8, 47, 10, 11, 12, 13, 17, 18, 26, 28, 49, 50, 51, 52, 53, 54, 58, 60)

    def validate(self) -> None:
        for name in ("n_curve_images", "n_contrast_images"):
            if getattr(self, name) < 1:
                raise SettingsError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("curve_shape", "contrast_shape"):
            if min(getattr(self, name)) < 1:
                raise SettingsError(f"{name} must be positive sizes, got {getattr(self, name)}")
        if self.contrast_shape[2] % 5:
            raise SettingsError(f"contrast_shape: z must be a multiple of 5 (5 mm slices on 1 mm voxels), "
                                f"got {self.contrast_shape[2]}")
        for key, value in self.t2_class_means.items():
            if not (isinstance(key, str) and key.isdigit()) or isinstance(value, bool) or not isinstance(value, (int, float)):
                raise SettingsError(f"t2_class_means: expected class number = mean, got {key!r} = {value!r}")

    def class_means_t2(self) -> dict[int, float]:
        """``t2_class_means`` with integer classes."""
        return {int(k): float(v) for k, v in self.t2_class_means.items()}


# --------------------------------------------------------------------------- helpers
def markdown_table(frame, floatfmt: str = ".3f") -> str:
    cols = list(frame.columns)
    def cell(v):
        return format(v, floatfmt) if isinstance(v, (float, np.floating)) and np.isfinite(v) else str(v)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def overlay(ax, image2d, labels2d, lut):
    """Grey image with the labels in ``lut`` colours (:meth:`LabelTable.colour_lut`) on top."""
    ax.imshow(image2d.T, cmap="gray", origin="lower", interpolation="nearest")
    ax.imshow(np.transpose(lut[labels2d], (1, 0, 2)), origin="lower", interpolation="nearest")
    ax.set_axis_off()


def mean_fg(scores: np.ndarray) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(np.nanmean(scores[1:]))


# --------------------------------------------------------------------------- curve
def stage_curve(args, settings: ModelEvaluationSettings, out: Path, work: Path) -> None:
    from ..generator import GenerationSpec, GeneratorSettings
    from ..network.model_file import read_model_file
    from ..training import make_validation_set, validate_checkpoints

    spec = GenerationSpec.from_folder(args.data / "labels_classes_priors")
    shape = (64, 64, 64) if args.quick else settings.curve_shape
    generator = GeneratorSettings(output_shape=shape)  # the training settings (shipped_model.toml only sets 160^3)
    n = 1 if args.quick else settings.n_curve_images
    tic = time.perf_counter()
    pairs = make_validation_set(args.data / "training_label_maps", work / "curve", generator, spec=spec,
                                n_images=n, seed=settings.seed)
    logger.info("curve: %d validation images %s in %.0f s", n, shape, time.perf_counter() - tic)
    checkpoints = sorted(args.checkpoints)
    tic = time.perf_counter()
    frame = validate_checkpoints(checkpoints, [p for p, _ in pairs], [q for _, q in pairs], out_dir=work / "curve")
    logger.info("curve: validated %d checkpoints in %.0f s", len(checkpoints), time.perf_counter() - tic)
    steps = {str(p): read_model_file(p).info.provenance.get("steps_trained") for p in checkpoints}
    frame.insert(1, "step", [steps[str(c)] for c in frame["checkpoint"]])
    frame = frame.sort_values("step", kind="stable").reset_index(drop=True)  # checkpoints of several runs
    frame["checkpoint"] = [Path(c).name for c in frame["checkpoint"]]
    frame.insert(3, "n_images", n)
    write_table(out / "validation_dice.tsv", frame, float_format="%.4f")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    structures = [c for c in frame.columns if c not in ("epoch", "step", "checkpoint", "n_images", "mean_dice")][1:]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name in structures:
        ax.plot(frame["step"], frame[name], color="0.8", linewidth=0.7)
    ax.plot(frame["step"], frame["mean_dice"], color="C0", linewidth=2, marker="o", label="mean of 32 structures")
    points = list(zip(frame["step"], frame["mean_dice"]))
    for k, (x, y) in enumerate(points):
        if k + 1 < len(points) and points[k + 1][0] == x:
            continue  # two files of one step (a checkpoint and the model made from it): label the last
        ax.annotate(f"{y:.3f}", (x, y), textcoords="offset points", xytext=(0, 7 if k % 2 else -13),
                    ha="center", fontsize=8)
    ax.set_xlabel("training step (batch 1)")
    ax.set_ylabel("Dice")
    ax.set_ylim(0, 1)
    ax.set_title(f"Validation Dice on {n} synthetic images (unseen seed {settings.seed})\n"
                 "fully random contrast; grey: individual structures", fontsize=10)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out / "dice_vs_step.png", dpi=90)
    plt.close(fig)
    print("\n## Dice vs training step\n")
    print(markdown_table(frame[["step", "epoch", "checkpoint", "mean_dice"]]))


# --------------------------------------------------------------------------- contrast/resolution
def contrast_generator(contrast: str, resolution: str, args, settings: ModelEvaluationSettings, shape, seed: int):
    """The generator of one condition: SynthSeg's T1 priors, T2-like means, or fully random contrast."""
    from ..generator.scans import contrast_generator as generator_of

    return generator_of(args.data / "training_label_maps", args.data / "labels_classes_priors", contrast, shape, seed,
                        slice_mm=5 if resolution == "5mm" else 1, t2_class_means=settings.class_means_t2())


def stage_contrast(args, settings: ModelEvaluationSettings, out: Path, work: Path) -> None:
    import pandas as pd
    from ..core.io import save_image
    from ..core.metrics import dice_scores
    from ..core.resample import resample_to_grid
    from ..inference import InferenceSettings, Segmenter

    segmenter = Segmenter(args.model, InferenceSettings(device=args.device, threads=args.threads))
    table = segmenter.label_table
    shape = (80, 80, 80) if args.quick else settings.contrast_shape
    n = 1 if args.quick else settings.n_contrast_images
    rows, examples = [], {}
    for ci, contrast in enumerate(CONTRASTS):
        for ri, resolution in enumerate(RESOLUTIONS):
            seed = settings.seed + 100 * (ci + 1) + 10 * ri
            generator = contrast_generator(contrast, resolution, args, settings, shape, seed)
            for i in range(n):
                image, labels, affine = generator.generate()
                name = f"{contrast}_{resolution}_{i}"
                if resolution == "5mm":
                    acquired, acq_affine = image[:, :, ::5], affine @ np.diag([1.0, 1.0, 5.0, 1.0])
                else:
                    acquired, acq_affine = image, affine
                path = save_image(acquired, acq_affine, work / "contrast" / f"{name}_image.nii.gz", dtype=np.float32)
                result = segmenter.segment(path)
                grids = {"input": (labels[:, :, ::5] if resolution == "5mm" else labels, result.labels.data)}
                if resolution == "5mm":
                    conf = result.labels_conformed
                    on_1mm = resample_to_grid(conf.data, conf.affine, labels.shape, affine, order=0)
                    grids["1mm"] = (labels, np.rint(on_1mm).astype(np.int32))
                for grid, (ref, pred) in grids.items():
                    scores = dice_scores(ref, pred, table.values)
                    rows.append({"condition": f"{contrast} {resolution}", "contrast": contrast,
                                 "resolution": resolution, "grid": grid, "image": i, "seed": seed,
                                 "mean_dice": mean_fg(scores),
                                 **{k: round(float(v), 3) for k, v in result.timings.items()},
                                 **dict(zip(table.names, scores))})
                logger.info("%s: mean Dice %.3f (%s), %.0f s", name, rows[-1]["mean_dice"], rows[-1]["grid"],
                            result.timings["total"])
                if i == 0:
                    z = labels.shape[2] // 2 if resolution == "1mm" else None
                    examples[(contrast, resolution)] = (image, labels, result, z)
    per_image = pd.DataFrame(rows)
    write_table(out / "contrast_resolution_dice_per_image.tsv", per_image, float_format="%.4f")
    structures = list(table.names)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        grouped = per_image.groupby(["condition", "contrast", "resolution", "grid"], sort=False)
        summary = grouped[structures].agg(lambda v: np.nanmean(v))
        summary.insert(0, "mean_dice_sd", grouped["mean_dice"].std())
        summary.insert(0, "mean_dice", grouped["mean_dice"].mean())
        summary.insert(0, "n_images", grouped.size())
        summary.insert(0, "seconds_per_scan", grouped["total"].mean())
    summary = summary.reset_index()
    write_table(out / "contrast_resolution_dice.tsv", summary, float_format="%.4f")
    print("\n## Contrast / resolution (mean Dice over 32 structures)\n")
    print(markdown_table(summary[["condition", "grid", "n_images", "mean_dice", "mean_dice_sd", "seconds_per_scan"]]))
    print("\n## Per structure (rows: structures, columns: conditions)\n")
    per_structure = summary.set_index(summary["condition"] + " (" + summary["grid"] + ")")[structures[1:]].T
    per_structure.insert(0, "structure", per_structure.index)
    print(markdown_table(per_structure, ".2f"))
    plot_examples(examples, table, out / "synthetic_examples.png", model_label(args.model))


def model_label(path: Path) -> str:
    """How the figures name the model measured: 'shipped model' or the file's name."""
    from ..inference.runtime import default_model_path

    return "shipped model" if Path(path).resolve() == default_model_path().resolve() else Path(path).name


def plot_examples(examples, table, path: Path, label: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lut = table.colour_lut(alpha=0.45)
    fig, axes = plt.subplots(len(examples), 3, figsize=(6.6, 2.2 * len(examples)))
    axes = np.atleast_2d(axes)
    for row, ((contrast, resolution), (image, labels, result, _)) in enumerate(examples.items()):
        # coronal slice through the middle (y axis of the RAS window), shows the 5 mm staircase
        y = labels.shape[1] // 2 + 10
        conf = result.labels_conformed
        from ..core.resample import resample_to_grid
        affine = result.labels.affine if resolution == "1mm" else result.labels.affine @ np.diag([1.0, 1.0, 0.2, 1.0])
        pred = result.labels.data if resolution == "1mm" else np.rint(
            resample_to_grid(conf.data, conf.affine, labels.shape, affine, order=0)).astype(np.int32)
        axes[row, 0].imshow(image[:, y].T, cmap="gray", origin="lower", interpolation="nearest")
        axes[row, 0].set_axis_off()
        axes[row, 0].set_title(f"{contrast} {resolution}", fontsize=8)
        overlay(axes[row, 1], image[:, y], labels[:, y], lut)
        axes[row, 1].set_title("ground truth", fontsize=8)
        overlay(axes[row, 2], image[:, y], pred[:, y], lut)
        axes[row, 2].set_title(label, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=70)
    plt.close(fig)
    # noisy synthetic images compress badly: a 128-colour palette keeps the file < 300 KB
    from PIL import Image as PILImage  # pillow is a matplotlib dependency

    PILImage.open(path).convert("RGB").quantize(colors=128).save(path, optimize=True)


# --------------------------------------------------------------------------- MNI152
def stage_mni(args, settings: ModelEvaluationSettings, out: Path, work: Path) -> None:
    import pandas as pd
    from nilearn import datasets
    from ..core.io import Image
    from ..core.metrics import dice_scores
    from ..core.resample import resample_to_grid
    from ..inference import InferenceSettings, Segmenter

    t1 = datasets.load_mni152_template(resolution=1)
    image = Image(np.asarray(t1.get_fdata(), np.float32), t1.affine)
    segmenter = Segmenter(args.model, InferenceSettings(device=args.device, threads=args.threads, flip=not args.quick))
    result = segmenter.segment(image)
    labels = result.labels.data
    rows = []
    for name, loader, group in (("white matter", datasets.load_mni152_wm_template, settings.wm_labels),
                                ("grey matter", datasets.load_mni152_gm_template, settings.gm_labels)):
        ref_img = loader(resolution=1)
        reference = resample_to_grid(np.asarray(ref_img.get_fdata(), np.float32), ref_img.affine,
                                     image.shape, image.affine) > 0.5
        predicted = np.isin(labels, group)
        dice = dice_scores(reference.astype(np.uint8), predicted.astype(np.uint8), [1])[0]
        rows.append({"group": name, "labels": " ".join(map(str, group)), "dice": dice,
                     "predicted_ml": predicted.sum() / 1000.0, "reference_ml": reference.sum() / 1000.0})
    frame = pd.DataFrame(rows)
    tiv = result.volumes["total intracranial"]
    write_table(out / "mni152_dice.tsv", frame, float_format="%.4f")
    print("\n## MNI152 T1 (nilearn, 1 mm), grouped Dice vs probability maps > 0.5\n")
    print(markdown_table(frame))
    print(f"\ntotal intracranial volume {tiv / 1000:.0f} ml; timings: "
          + ", ".join(f"{k} {v:.1f} s" for k, v in result.timings.items()))
    print("QC:", getattr(result.qc, "flagged", result.qc))
    (work / "mni_timings.json").write_text(json.dumps(result.timings))

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lut = segmenter.label_table.colour_lut(alpha=0.45)
    data = image.data
    centre = np.rint(np.linalg.solve(image.affine, [0.0, -18.0, 12.0, 1.0])[:3]).astype(int)  # through the thalami
    cuts = [(data[centre[0]], labels[centre[0]], "sagittal x=0"),
            (data[:, centre[1]], labels[:, centre[1]], "coronal y=-18"),
            (data[:, :, centre[2]], labels[:, :, centre[2]], "axial z=12")]
    fig, axes = plt.subplots(2, 3, figsize=(11, 7.5))
    for k, (img, lab, title) in enumerate(cuts):
        axes[0, k].imshow(img.T, cmap="gray", origin="lower", interpolation="nearest")
        axes[0, k].set_axis_off()
        axes[0, k].set_title(title, fontsize=9)
        overlay(axes[1, k], img, lab, lut)
    scores = f"WM Dice {rows[0]['dice']:.3f}, GM Dice {rows[1]['dice']:.3f}"
    fig.suptitle(f"MNI152 T1 1 mm, {model_label(args.model)} ({scores})", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "mni152_overlay.png", dpi=72)
    plt.close(fig)


# --------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    from ..inference.runtime import default_model_path

    parser = CommandParser(prog=PROG, description=__doc__.split("\n\n")[0].split(": ", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stages", default="curve,contrast,mni", help="comma-separated: curve, contrast, mni")
    parser.add_argument("--settings", default="evaluate_model",
                        help="evaluation settings: a TOML/JSON file, or the name of a shipped recipe "
                        "(default: evaluate_model)")
    parser.add_argument("--data", type=Path, default=Path("..") / "shared" / "data" / "synthseg",
                        help="SynthSeg data folder (training_label_maps/, labels_classes_priors/)")
    parser.add_argument("--model", type=Path, default=default_model_path(),
                        help="model file measured by the contrast and mni stages (default: the shipped one)")
    parser.add_argument("--checkpoints", type=Path, nargs="+",
                        default=sorted((Path(".devdata") / "shipped_run").glob("epoch_*.npz")),
                        help="checkpoints for the Dice-vs-step curve (default: .devdata/shipped_run/epoch_*.npz)")
    parser.add_argument("--out-dir", type=Path, default=Path("docs") / "model")
    parser.add_argument("--work-dir", type=Path, help="generated images (default: a temporary folder)")
    parser.add_argument("--seed", type=int, help="generator seed (training used 0; default: from --settings)")
    parser.add_argument("--n-curve-images", type=positive_int)
    parser.add_argument("--curve-shape", type=positive_int, nargs=3)
    parser.add_argument("--n-contrast-images", type=positive_int)
    parser.add_argument("--contrast-shape", type=positive_int, nargs=3,
                        help="RAS window of the label maps (z a multiple of 5)")
    parser.add_argument("--device", default="cpu", choices=["auto", "cpu", "gpu"])
    parser.add_argument("--threads", type=positive_int, default=None)
    parser.add_argument("--quick", action="store_true",
                        help="plumbing check: 1 small image per measurement, MNI without flip")
    return parser


def load_settings(args: argparse.Namespace) -> ModelEvaluationSettings:
    """The ``--settings`` file with the command-line overrides applied."""
    from ..core.settings import recipe_path

    path = recipe_path(args.settings)
    settings = ModelEvaluationSettings.from_file(path)
    overrides = {name: getattr(args, name) for name in
                 ("seed", "n_curve_images", "curve_shape", "n_contrast_images", "contrast_shape")
                 if getattr(args, name) is not None}
    try:
        return settings.replace(**overrides)
    except SettingsError as err:
        raise SettingsError(f"command line: {err}") from None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = set(stages) - set(STAGES)
    if unknown:
        parser.error(f"--stages: unknown stage(s) {', '.join(sorted(unknown))}; use {', '.join(STAGES)}")
    try:
        settings = load_settings(args)
    except SettingsError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 1
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    run = {"curve": stage_curve, "contrast": stage_contrast, "mni": stage_mni}
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work_dir or Path(tmp)
        for stage in stages:
            (work / stage).mkdir(parents=True, exist_ok=True)
            tic = time.perf_counter()
            run[stage](args, settings, args.out_dir, work)
            logger.info("stage %s: %.0f s", stage, time.perf_counter() - tic)
    return 0
