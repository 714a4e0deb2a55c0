"""Keras 2 ``.h5`` weight files, read and written with h5py alone.

Keras 2 (``tf.keras`` / ``tf-keras``) stores a network's weights in HDF5 in one of two layouts:

- **full model** (``model.save("net.h5")``, training checkpoints): a root attribute ``model_config``
  (the architecture, as JSON that may hold Python lambdas) and a group ``model_weights``;
- **weights only** (``model.save_weights("net.h5")``): the weights at the root.

In both, the weights group has an attribute ``layer_names`` (one entry per layer), each layer a
sub-group whose attribute ``weight_names`` lists its variables (``"<layer>/kernel:0"``, ...), each
variable a dataset at that relative path. :func:`read_weights` reads exactly this and nothing else:
never ``model_config`` nor ``training_config``, no pickles, nothing imported or evaluated, no
external links or virtual datasets followed. Arrays are keyed by layer name and variable name
(``kernel``, ``bias``, ``gamma``, ``beta``, ``moving_mean``, ``moving_variance``) as Keras 2's own
``load_weights(by_name=True)`` does: the layer is the group's name; only for a nested Keras 2 model
(a sub-model used as a layer, whose group holds several kernels) the layer is taken from each weight
name, so its weights are found under the names of its own layers. Attributes that Keras split in
chunks (``layer_names0``, ``layer_names1``, ... above HDF5's 64 kB header limit) are joined.

:func:`write_weights` writes the weights-only layout exactly as ``tf-keras`` does, so that Keras 2's
``model.load_weights(path)`` and ``model.load_weights(path, by_name=True)`` (what FreeSurfer's
``mri_synthseg`` calls) accept it.

Every problem raises :class:`OfficialModelError`, a :class:`~synthseg_bids.network.ModelFileError`
whose one-line message starts with the file name.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from .model_file import ModelFileError

__all__ = [
    "KERAS2_LAYOUT_VERSION",
    "H5Weights",
    "OfficialModelError",
    "is_keras2_h5",
    "read_weights",
    "write_weights",
]

#: ``keras_version`` attribute written by :func:`write_weights`: the tf-keras release whose
#: weights-only layout the file follows (Keras 2 readers check that it is not a Keras 1 file).
KERAS2_LAYOUT_VERSION = "2.21.0"

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


class OfficialModelError(ModelFileError):
    """A Keras 2 ``.h5`` network file is unreadable, incomplete or not the expected network.

    The message is one line and starts with the file name (as every :class:`ModelFileError`).
    """


@dataclass(frozen=True)
class H5Weights:
    """The weights of a Keras 2 ``.h5`` file.

    Attributes
    ----------
    path : pathlib.Path
        The file.
    layout : str
        ``'full'`` (``model.save``: weights under ``model_weights/``) or ``'weights'``
        (``model.save_weights``: weights at the root).
    layers : dict
        ``{layer name: {variable name: float32 array}}`` for every layer that has weights, in
        the file's order; variable names without the ``:0`` suffix (``'kernel'``, ``'bias'``, ...).
    keras_version, backend : str
        The file's ``keras_version`` and ``backend`` attributes ('' when absent).
    """

    path: Path
    layout: str
    layers: dict[str, dict[str, np.ndarray]]
    keras_version: str = ""
    backend: str = ""

    def shapes(self) -> dict[str, dict[str, tuple[int, ...]]]:
        """``{layer: {variable: shape}}``."""
        return {name: {k: tuple(v.shape) for k, v in variables.items()} for name, variables in self.layers.items()}


def _has_hdf5_signature(path: Path) -> bool:
    # The HDF5 superblock is at byte 0, 512, 1024, 2048, ... (a user block may precede it).
    with open(path, "rb") as stream:
        offset = 0
        while True:
            stream.seek(offset)
            head = stream.read(8)
            if len(head) < 8:
                return False
            if head == _HDF5_SIGNATURE:
                return True
            offset = 512 if offset == 0 else offset * 2


def is_keras2_h5(path: str | os.PathLike) -> bool:
    """Whether ``path`` is an HDF5 file holding Keras 2 weights (either layout).

    Only the file signature and the ``model_weights`` group / ``layer_names`` attribute are
    looked at; never raises for a missing or unreadable file (returns False).
    """
    path = Path(path)
    try:
        if not path.is_file() or not _has_hdf5_signature(path):
            return False
        import h5py

        with h5py.File(path, "r") as handle:
            return _weights_root(handle)[0] is not None
    except (OSError, ValueError, KeyError):
        return False


def _weights_root(handle):
    """(group holding ``layer_names``, layout) or (None, reason)."""
    import h5py

    link = handle.get("model_weights", getlink=True)
    if link is not None:
        if not isinstance(link, h5py.HardLink) or not isinstance(handle["model_weights"], h5py.Group):
            return None, "its model_weights entry is not a group"
        group = handle["model_weights"]
        if not _has_list_attr(group, "layer_names"):
            return None, "its model_weights group has no layer_names attribute"
        return group, "full"
    if _has_list_attr(handle, "layer_names"):
        return handle, "weights"
    return None, "it holds no Keras weights (no model_weights group and no layer_names attribute)"


def _has_list_attr(holder, name: str) -> bool:
    return name in holder.attrs or f"{name}0" in holder.attrs


def _list_attr(holder, name: str):
    """A list attribute; Keras splits one above HDF5's 64 kB header limit into name0, name1, ..."""
    if name in holder.attrs:
        return holder.attrs[name]
    chunks, index = [], 0
    while f"{name}{index}" in holder.attrs:
        chunks.append(np.asarray(holder.attrs[f"{name}{index}"]))
        index += 1
    return np.concatenate(chunks) if chunks else np.array([], dtype="S1")


def _names(values, what: str, path: Path) -> list[str]:
    array = np.asarray(values)
    if array.size == 0:
        return []
    if array.ndim != 1 or array.dtype.kind not in "SUO":
        raise OfficialModelError(path, f"its {what} attribute is not a list of names")
    names = []
    for value in array.tolist():
        if isinstance(value, bytes):
            value = value.decode("utf-8", errors="strict")
        if not isinstance(value, str):
            raise OfficialModelError(path, f"its {what} attribute is not a list of names")
        names.append(value)
    return names


def read_weights(path: str | os.PathLike) -> H5Weights:
    """Read every weight array of a Keras 2 ``.h5`` file, by layer name.

    Parameters
    ----------
    path
        A file written by Keras 2's ``model.save`` (HDF5) or ``model.save_weights``.

    Returns
    -------
    H5Weights

    Raises
    ------
    OfficialModelError
        Missing file, not HDF5, HDF5 without Keras weights, a weight that is not a float array
        (or is reached through an external link), or a layer name given twice.
    """
    import h5py

    path = Path(path)
    if not path.exists():
        raise OfficialModelError(path, "model file not found")
    if not path.is_file():
        raise OfficialModelError(path, "is not a file")
    try:
        if not _has_hdf5_signature(path):
            raise OfficialModelError(path, "is not an HDF5 file (not a Keras .h5 network)")
        with h5py.File(path, "r") as handle:
            root, layout = _weights_root(handle)
            if root is None:
                raise OfficialModelError(path, f"is an HDF5 file but not a Keras network: {layout}")
            keras_version = _text_attr(handle, root, "keras_version")
            backend = _text_attr(handle, root, "backend")
            layers: dict[str, dict[str, np.ndarray]] = {}
            for group_name in _names(_list_attr(root, "layer_names"), "layer_names", path):
                link = root.get(group_name, getlink=True)
                if link is None:
                    raise OfficialModelError(path, f"layer {group_name!r} is listed but has no group")
                if not isinstance(link, h5py.HardLink) or not isinstance(root[group_name], h5py.Group):
                    raise OfficialModelError(path, f"layer {group_name!r} is not a plain HDF5 group")
                group = root[group_name]
                weight_names = _names(_list_attr(group, "weight_names"), "weight_names", path)
                nested = _is_nested_model(weight_names)
                for weight_name in weight_names:
                    layer, variable = _split_weight_name(group_name, weight_name, nested)
                    array = _read_dataset(group, weight_name, path)
                    variables = layers.setdefault(layer, {})
                    if variable in variables:  # a layer shared with a nested model is listed twice
                        if not np.array_equal(variables[variable], array, equal_nan=True):
                            raise OfficialModelError(
                                path, f"weight {layer}/{variable} is stored twice, with different values"
                            )
                        continue
                    variables[variable] = array
    except OfficialModelError:
        raise
    except (OSError, ValueError, KeyError, UnicodeDecodeError) as err:
        raise OfficialModelError(path, f"is not a readable Keras .h5 file ({_first_line(err)})") from None
    if not layers:
        raise OfficialModelError(path, "is a Keras file without any weights")
    return H5Weights(path=path, layout=layout, layers=layers, keras_version=keras_version, backend=backend)


def _text_attr(handle, root, name: str) -> str:
    for holder in (root, handle):
        if name in holder.attrs:
            value = holder.attrs[name]
            if isinstance(value, bytes):
                return value.decode("utf-8", errors="replace")
            if isinstance(value, str):
                return value
    return ""


def _variable(weight_name: str) -> str:
    return weight_name.split("/")[-1].split(":")[0]


def _is_nested_model(weight_names: list[str]) -> bool:
    """A layer group holds a nested model when a variable name repeats (several kernels, ...)."""
    variables = [_variable(name) for name in weight_names]
    return len(set(variables)) != len(variables)


def _split_weight_name(group_name: str, weight_name: str, nested: bool) -> tuple[str, str]:
    """(layer, variable): ('unet_conv_downarm_0_0', 'kernel') from 'unet_conv_downarm_0_0/kernel:0'.

    A plain layer's weights belong to the group's layer, whatever scope their names carry (graph
    builds may add suffixes such as 'unet_conv_downarm_0_0_1/kernel:0'); a nested model's weights
    belong to the layer named in each weight name.
    """
    parts = weight_name.split("/")
    layer = parts[-2] if nested and len(parts) >= 2 else group_name
    return layer, _variable(weight_name)


def _read_dataset(group, weight_name: str, path: Path) -> np.ndarray:
    import h5py

    # Follow only hard links, component by component (no external files, no soft links).
    node = group
    for part in weight_name.split("/"):
        link = node.get(part, getlink=True) if isinstance(node, h5py.Group) else None
        if link is None:
            raise OfficialModelError(path, f"weight {weight_name} is listed but not stored")
        if not isinstance(link, h5py.HardLink):
            raise OfficialModelError(path, f"weight {weight_name} is a link, which is never followed")
        node = node[part]
    if not isinstance(node, h5py.Dataset):
        raise OfficialModelError(path, f"weight {weight_name} is not a dataset")
    if node.is_virtual or node.external:
        raise OfficialModelError(path, f"weight {weight_name} is stored outside the file, which is never read")
    if node.dtype.kind != "f":
        raise OfficialModelError(path, f"weight {weight_name} has non-float type {node.dtype}")
    return np.asarray(node[()], dtype=np.float32)


def write_weights(
    path: str | os.PathLike,
    layers: Mapping[str, Mapping[str, np.ndarray]],
    *,
    attributes: Mapping[str, str] | None = None,
) -> Path:
    """Write weights in Keras 2's weights-only ``.h5`` layout (``save_weights``), atomically.

    Parameters
    ----------
    path
        Output file; its folder is created if needed. Nothing is left under this name on failure.
    layers
        ``{layer name: {variable name: array}}``; the variables of each layer in Keras 2's order
        (convolutions: kernel, bias; batch normalisation: gamma, beta, moving_mean,
        moving_variance), which is the order ``load_weights`` assigns them in.
    attributes
        Extra text attributes of the root group (e.g. the writer's name and version).

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    import h5py

    from ..core.io import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as handle:
            handle.attrs["backend"] = np.bytes_("tensorflow")
            handle.attrs["keras_version"] = np.bytes_(KERAS2_LAYOUT_VERSION)
            for key, value in (attributes or {}).items():
                handle.attrs[key] = np.bytes_(str(value))
            handle.attrs["layer_names"] = np.array([name.encode("utf-8") for name in layers], dtype="S")
            for name, variables in layers.items():
                group = handle.create_group(name)
                weight_names = [f"{name}/{variable}:0" for variable in variables]
                group.attrs["weight_names"] = np.array([w.encode("utf-8") for w in weight_names], dtype="S")
                for weight_name, value in zip(weight_names, variables.values()):
                    group.create_dataset(weight_name, data=np.asarray(value, dtype=np.float32))
    return path


def _first_line(err: Exception) -> str:
    lines = str(err).strip().splitlines()
    return lines[0][:200] if lines else type(err).__name__
