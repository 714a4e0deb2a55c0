"""Report figures: the mosaic (plain and overlaid halves) and the thumbnail.

References are independent of the drawing code: the label map's own values, the
FreeSurfer colours of ``core.labels`` (and the two documented display overrides), pixel
colours read back with Pillow, and a scan stored flipped (LPS) that must give the very
same picture.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
from helpers import make_toy_label_map, toy_affine
from PIL import Image as PILImage
from report_data import toy_scan

from synthseg_bids.core.labels import SYNTHSEG_STRUCTURES
from synthseg_bids.reports.figures import (
    FIGURE_WIDTH_PX,
    figure_labels,
    plot_mosaic,
    plot_thumbnail,
)

COLOUR = {s.value: s.color for s in SYNTHSEG_STRUCTURES}
WM_DISPLAY, CSF_DISPLAY = (51, 153, 255), (255, 230, 0)


def _labels() -> np.ndarray:
    labels = make_toy_label_map(shape=(40, 48, 36))
    labels[labels == 258] = 0
    return labels


def _rgb(png) -> np.ndarray:
    with PILImage.open(png) as image:
        return np.asarray(image.convert("RGB"))


def test_mosaic_halves_plain_scan_and_label_colours(tmp_path):
    labels = _labels()
    anat, dseg = toy_scan(tmp_path, "scan", labels)
    png = plot_mosaic(anat, dseg, tmp_path / "fig.png")
    rgb = _rgb(png)
    assert rgb.shape[1] == 2 * FIGURE_WIDTH_PX and rgb.shape[0] % 2 == 0
    top, bottom = rgb[: rgb.shape[0] // 2], rgb[rgb.shape[0] // 2:]
    # the top half is the plain scan: grey levels only (the orientation letters are white)
    assert np.all(top.max(-1) == top.min(-1))
    # the bottom half: every structure in the map drawn in its colour (outlines are opaque), no other
    present = set(np.unique(labels).tolist()) - {0}
    assert set(figure_labels(png)) == present
    colours = {tuple(c) for c in bottom.reshape(-1, 3)}
    expected = {v: WM_DISPLAY if v in (2, 41) else CSF_DISPLAY if v == 24 else COLOUR[v] for v in present}
    assert set(expected.values()) <= colours
    assert COLOUR[17] not in colours and COLOUR[2] not in colours  # hippocampus (absent), FreeSurfer's WM white


def test_mosaic_shows_the_subjects_left_on_the_left(tmp_path):
    """Only the left lateral ventricle kept: its colour is in the left half of the coronal and axial tiles."""
    labels = _labels()
    labels[labels == 43] = 41  # right ventricle -> right white matter
    anat, dseg = toy_scan(tmp_path, "scan", labels)
    rgb = _rgb(plot_mosaic(anat, dseg, tmp_path / "fig.png", columns=1))
    bottom = rgb[rgb.shape[0] // 2:]
    rows = np.flatnonzero(bottom.max(axis=(1, 2)) > 0)
    gaps = np.flatnonzero(np.diff(rows) > 1)  # three tile rows (sagittal, coronal, axial) on black
    bands = np.split(rows, gaps + 1)
    assert len(bands) == 3
    for band in bands[1:]:
        tile = bottom[band]
        cols = np.flatnonzero(tile.max(axis=(0, 2)) > 0)
        centre = (cols.min() + cols.max()) / 2
        ventricle = np.argwhere(np.all(tile == COLOUR[4], axis=-1))
        assert ventricle.size and ventricle[:, 1].max() < centre


def test_figures_do_not_depend_on_how_the_scan_is_stored(tmp_path):
    """An LPS copy of the scan (axes 0 and 1 reversed, affine adjusted) gives the same pictures."""
    labels = _labels()
    ras = toy_scan(tmp_path / "ras", "scan", labels)
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    flip[:2, 3] = [labels.shape[0] - 1, labels.shape[1] - 1]
    lps_affine = toy_affine() @ flip
    assert np.allclose(lps_affine @ [labels.shape[0] - 1, labels.shape[1] - 1, 0, 1], toy_affine() @ [0, 0, 0, 1])
    lps = toy_scan(tmp_path / "lps", "scan", labels[::-1, ::-1], lps_affine)
    assert np.array_equal(nib.load(lps[1]).get_fdata()[::-1, ::-1], labels)
    for plot in (plot_mosaic, plot_thumbnail):
        a = _rgb(plot(*ras, tmp_path / "a.png"))
        b = _rgb(plot(*lps, tmp_path / "b.png"))
        assert np.array_equal(a, b), plot.__name__


def test_thumbnail_is_small_and_lists_its_labels(tmp_path):
    labels = _labels()
    anat, dseg = toy_scan(tmp_path, "scan", labels)
    png = plot_thumbnail(anat, dseg, tmp_path / "thumb.png")
    with PILImage.open(png) as image:
        assert image.size[1] == 120 and image.size[0] < 300
    assert {2, 3, 41, 42} <= set(figure_labels(png)) <= set(np.unique(labels).tolist())
    assert png.stat().st_size < 30_000
