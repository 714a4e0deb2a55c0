"""Report figures: a mosaic of the label map over the scan, and a small thumbnail.

Both are composed pixel by pixel with numpy and written with Pillow (no plotting
library: the label colours, the outlines and the panel sizes are exact, and a figure
takes a fraction of a second).

- :func:`plot_mosaic` writes ONE PNG holding two mosaics of the same slices, one above
  the other: the plain scan (top half) and the scan with the labels (bottom half: a
  light fill and full-colour outlines). The subject report shows one half at a time
  and switches with a CSS-only toggle. Rows: sagittal, coronal and axial views of the
  scan reoriented to RAS (neurological convention: the subject's left on the left),
  :data:`MOSAIC_COLUMNS` slices per view spread over the label map's extent. The label
  values drawn are stored in the PNG text field ``Labels`` (:func:`figure_labels`).
- :func:`plot_thumbnail` writes a small coronal + axial overlay through the label map's
  centre, for the group report's grid.

Colours are FreeSurfer's, except where they vanish on a scan (:func:`display_colours`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..core.io import atomic_path, load_image, load_label_map
from ..core.labels import SYNTHSEG_STRUCTURES

__all__ = [
    "DISPLAY_OVERRIDES",
    "FIGURE_WIDTH_PX",
    "MOSAIC_COLUMNS",
    "THUMBNAIL_VARIANT",
    "display_colours",
    "figure_labels",
    "plot_mosaic",
    "plot_thumbnail",
]

#: Width (CSS pixels) at which the subject report shows a mosaic; the PNG has twice as many pixels.
FIGURE_WIDTH_PX = 960
#: ``desc`` variant of the thumbnails: ``<entities>_desc-synthsegthumb<contrast>_dseg.png`` in ``figures/``.
THUMBNAIL_VARIANT = "thumb"
#: Slices per view in the mosaic.
MOSAIC_COLUMNS = 6
#: Display colours replacing FreeSurfer's where its colour is lost on a scan: its near-white
#: cerebral white matter (on bright T1w white matter) and near-black CSF (on dark T1w CSF).
DISPLAY_OVERRIDES = {"Cerebral-White-Matter": (51, 153, 255), "CSF": (255, 230, 0)}
#: Opacity of the label fill (outlines are opaque).
FILL_ALPHA = 0.3
_THUMB_HEIGHT_PX = 120
_KNOWN = {s.value: s for s in SYNTHSEG_STRUCTURES}
#: (view, RAS axis cut, letters on the left and right of the panel)
_VIEWS = (("sagittal", 0, ("P", "A")), ("coronal", 1, ("L", "R")), ("axial", 2, ("L", "R")))


def display_colours() -> dict[int, tuple[int, int, int]]:
    """RGB (0-255) drawn for each known label value (FreeSurfer's LUT, with :data:`DISPLAY_OVERRIDES`)."""
    colours = {}
    for value, structure in _KNOWN.items():
        stem = structure.name.removeprefix("Left-").removeprefix("Right-")
        colours[value] = tuple(DISPLAY_OVERRIDES.get(stem, structure.color))
    colours.pop(0, None)
    return colours


def _canonical(image, data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``data`` reoriented to the closest RAS axes: (array, voxel sizes in mm)."""
    import nibabel as nib

    canonical = nib.as_closest_canonical(nib.Nifti1Image(data, image.affine))
    return np.asanyarray(canonical.dataobj), np.asarray(canonical.header.get_zooms()[:3], dtype=float)


def _load(anat_file, dseg_file) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scan scaled to [0, 1] and labels, both RAS and cropped to the labels' bounding box, and voxel sizes."""
    anat, dseg = load_image(anat_file), load_label_map(dseg_file)
    data, zooms = _canonical(anat, np.asarray(anat.data, dtype=np.float32))
    labels, _ = _canonical(dseg, np.clip(dseg.data, 0, None).astype(np.int32))
    labels = np.where(np.isin(labels, list(_KNOWN)), labels, 0)
    found = np.argwhere(labels > 0)
    if found.size:
        lo = np.maximum(found.min(0) - 3, 0)
        hi = np.minimum(found.max(0) + 4, labels.shape)
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        data, labels = data[box], labels[box]
    finite = data[np.isfinite(data)]
    low, high = np.percentile(finite, [1, 99.5]) if finite.size else (0.0, 1.0)
    scaled = np.clip((np.nan_to_num(data) - low) / max(high - low, 1e-6), 0, 1)
    return scaled, labels, zooms


def _panel(volume: np.ndarray, axis: int, index: int) -> np.ndarray:
    """One slice as an image array (rows top to bottom, columns left to right)."""
    cut = np.take(volume, index, axis=axis)  # remaining axes in RAS order
    return cut.T[::-1]  # rows: the last remaining axis (S or A) upwards; columns: the first (R or A) rightwards


def _resize(array: np.ndarray, shape: tuple[int, int], nearest: bool) -> np.ndarray:
    from PIL import Image as PILImage

    if nearest:
        rows = (np.arange(shape[0]) * array.shape[0] / shape[0]).astype(int)
        cols = (np.arange(shape[1]) * array.shape[1] / shape[1]).astype(int)
        return array[np.ix_(rows, cols)]
    image = PILImage.fromarray((array * 255).astype(np.uint8))
    return np.asarray(image.resize((shape[1], shape[0]), PILImage.Resampling.BILINEAR), dtype=np.float32) / 255


def _outline(labels: np.ndarray) -> np.ndarray:
    """Pixels of a labelled region next to a pixel of another value (4-neighbourhood)."""
    edge = np.zeros(labels.shape, dtype=bool)
    edge[1:] |= labels[1:] != labels[:-1]
    edge[:-1] |= labels[:-1] != labels[1:]
    edge[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    return edge & (labels > 0)


def _render(gray: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
    """RGB uint8 tile: the scan, with the labels' fill and outlines when given."""
    rgb = np.repeat(gray[..., None], 3, axis=2)
    if labels is not None:
        lut = np.zeros((max(_KNOWN) + 1, 3), dtype=np.float32)
        for value, colour in display_colours().items():
            lut[value] = np.asarray(colour, dtype=np.float32) / 255
        inside = labels > 0
        rgb[inside] = (1 - FILL_ALPHA) * rgb[inside] + FILL_ALPHA * lut[labels[inside]]
        edge = _outline(labels)
        rgb[edge] = lut[labels[edge]]
    return (rgb * 255).round().astype(np.uint8)


def _tile_shape(shape_mm: tuple[float, float], box: tuple[int, int]) -> tuple[int, int]:
    """(rows, columns) of a panel ``shape_mm`` (height, width) fitted in ``box`` pixels, aspect kept."""
    scale = min(box[0] / shape_mm[0], box[1] / shape_mm[1])
    return max(1, round(shape_mm[0] * scale)), max(1, round(shape_mm[1] * scale))


def _view_tiles(gray, labels, zooms, axis: int, indices, box) -> tuple[list, list, set[int]]:
    """Plain and overlaid tiles of one view at ``indices``, and the label values they show."""
    others = [a for a in range(3) if a != axis]
    shape_mm = (gray.shape[others[1]] * zooms[others[1]], gray.shape[others[0]] * zooms[others[0]])
    size = _tile_shape(shape_mm, box)
    plain, overlay, shown = [], [], set()
    for index in indices:
        g = _resize(_panel(gray, axis, index), size, nearest=False)
        lab = _resize(_panel(labels, axis, index), size, nearest=True)
        shown.update(int(v) for v in np.unique(lab) if v)
        plain.append(_render(g, None))
        overlay.append(_render(g, lab))
    return plain, overlay, shown


def _letters(tile: np.ndarray, left: str, right: str, scale: int) -> np.ndarray:
    from PIL import Image as PILImage
    from PIL import ImageDraw, ImageFont

    image = PILImage.fromarray(tile)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=14 * scale)
    height = image.height
    draw.text((4 * scale, height // 2), left, fill=(255, 255, 255), font=font, anchor="lm")
    draw.text((image.width - 4 * scale, height // 2), right, fill=(255, 255, 255), font=font, anchor="rm")
    return np.asarray(image)


def _slices(extent: int, n: int) -> list[int]:
    """``n`` slice indices spread over ``extent`` voxels, away from the edges."""
    return [round(extent * (i + 1) / (n + 1)) for i in range(n)]


def _grid(rows: list[list[np.ndarray]], width: int, gap: int) -> np.ndarray:
    """Tiles placed row by row on a black canvas, each centred in a cell of ``width / len(row)``."""
    heights = [max(t.shape[0] for t in row) for row in rows]
    canvas = np.zeros((sum(heights) + gap * (len(rows) - 1), width, 3), dtype=np.uint8)
    top = 0
    for row, height in zip(rows, heights):
        cell = width // len(row)
        for i, tile in enumerate(row):
            y = top + (height - tile.shape[0]) // 2
            x = i * cell + (cell - tile.shape[1]) // 2
            canvas[y:y + tile.shape[0], x:x + tile.shape[1]] = tile
        top += height + gap
    return canvas


def _palette_image(array: np.ndarray):
    """``array`` with 256 colours (a quarter of the RGB file's size): the label colours exactly, the rest adaptive."""
    from PIL import Image as PILImage

    exact = sorted(set(display_colours().values()))
    adaptive = PILImage.fromarray(array).quantize(256 - len(exact), method=PILImage.Quantize.FASTOCTREE,
                                                  dither=PILImage.Dither.NONE)
    indices = np.asarray(adaptive, dtype=np.uint8) + len(exact)
    codes = (array[..., 0].astype(np.int32) << 16) | (array[..., 1].astype(np.int32) << 8) | array[..., 2]
    for index, (r, g, b) in enumerate(exact):
        indices[codes == (r << 16 | g << 8 | b)] = index
    image = PILImage.fromarray(indices, mode="P")
    image.putpalette([c for colour in exact for c in colour] + adaptive.getpalette()[: 3 * (256 - len(exact))])
    return image


def _save_png(array: np.ndarray, out_file, labels: set[int]) -> Path:
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Labels", " ".join(str(v) for v in sorted(labels)))
    out_file = Path(out_file)
    with atomic_path(out_file) as tmp:
        _palette_image(array).save(tmp, format="png", pnginfo=info, compress_level=6)
    return out_file


def plot_mosaic(anat_file, dseg_file, out_file, columns: int = MOSAIC_COLUMNS) -> Path:
    """Write the plain and overlaid mosaics (top and bottom halves of one PNG, ``2 * FIGURE_WIDTH_PX`` wide)."""
    gray, labels, zooms = _load(anat_file, dseg_file)
    width, gap = 2 * FIGURE_WIDTH_PX, 8
    box = (2 * FIGURE_WIDTH_PX // columns - gap,) * 2
    plain_rows, overlay_rows, shown = [], [], set()
    for _, axis, (left, right) in _VIEWS:
        plain, overlay, seen = _view_tiles(gray, labels, zooms, axis, _slices(gray.shape[axis], columns), box)
        plain[0], overlay[0] = _letters(plain[0], left, right, 2), _letters(overlay[0], left, right, 2)
        plain_rows.append(plain)
        overlay_rows.append(overlay)
        shown |= seen
    top, bottom = _grid(plain_rows, width, gap), _grid(overlay_rows, width, gap)
    return _save_png(np.concatenate([top, bottom]), out_file, shown)


def plot_thumbnail(anat_file, dseg_file, out_file) -> Path:
    """Write a coronal and an axial overlay through the labels' centre, :data:`_THUMB_HEIGHT_PX` high."""
    gray, labels, zooms = _load(anat_file, dseg_file)
    found = np.argwhere(labels > 0)
    centre = found.mean(0).round().astype(int) if found.size else np.array(gray.shape) // 2
    tiles, shown = [], set()
    for _, axis, _ in _VIEWS[1:]:
        _, overlay, seen = _view_tiles(gray, labels, zooms, axis, [int(centre[axis])],
                                       (_THUMB_HEIGHT_PX, 2 * _THUMB_HEIGHT_PX))
        tiles.append(overlay[0])
        shown |= seen
    height = max(t.shape[0] for t in tiles)
    padded = [np.pad(t, ((0, height - t.shape[0]), (0, 2), (0, 0))) for t in tiles]
    return _save_png(np.concatenate(padded, axis=1), out_file, shown)


def figure_labels(png: str | os.PathLike) -> list[int]:
    """Label values drawn in a figure of :func:`plot_mosaic` or :func:`plot_thumbnail` (empty for other PNGs)."""
    from PIL import Image as PILImage

    with PILImage.open(png) as image:
        text = getattr(image, "text", {}).get("Labels", "")
    return [int(v) for v in text.split()]
