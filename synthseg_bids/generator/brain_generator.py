"""Numpy front end of the generative model (SynthSeg's ``BrainGenerator``).

Loads the training label maps once (uint8 generation indices, RAS), picks one at random
for each example with a seeded ``numpy.random.Generator`` and runs
:class:`~synthseg_bids.generator.layers.LabelsToImage` on it.

Examples
--------
A folder with one 32^3 label map (left and right cerebral white matter), 32^3 examples:

>>> import tempfile
>>> from synthseg_bids.core.io import save_image
>>> folder = tempfile.TemporaryDirectory()
>>> label_map = np.zeros((32, 32, 32), np.int16)
>>> label_map[6:26, 6:16, 6:26], label_map[6:26, 16:26, 6:26] = 2, 41
>>> _ = save_image(label_map, np.eye(4), f"{folder.name}/map.nii.gz")
>>> gen = BrainGenerator(folder.name, GeneratorSettings(output_shape=(32, 32, 32)), seed=0)
>>> image, labels, affine = gen.generate()
>>> image.shape, image.dtype.name, bool(0 <= image.min() <= image.max() <= 1), affine.shape
((32, 32, 32), 'float32', True, (4, 4))
>>> set(np.unique(labels).tolist()) <= {0, 2, 41}
True
>>> folder.cleanup()
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

import numpy as np
from keras import ops

from .layers import LabelsToImage
from .settings import GeneratorSettings
from .spec import GenerationSpec, load_training_maps

__all__ = ["BrainGenerator"]


class BrainGenerator:
    """Random (image, label map) pairs from a set of training label maps.

    Parameters
    ----------
    label_maps
        Folder of label maps, one file, or a list of files (all of one shape).
    settings
        Generator settings (default: SynthSeg's training defaults, 160^3 output).
    spec
        Generation spec; default :meth:`GenerationSpec.from_label_maps` (the labels present
        in the maps, one class per label with left/right sharing, uniform priors). The maps
        are then read twice (once for the labels, once as indices).
    seed
        Seed of the map choice and of the layer (None: OS entropy). Equal seeds give equal
        sequences of examples.

    Attributes
    ----------
    maps : TrainingMaps
        The label maps as indices.
    layer : LabelsToImage
        The generative model.
    """

    def __init__(
        self,
        label_maps: str | os.PathLike | Sequence[str | os.PathLike],
        settings: GeneratorSettings = GeneratorSettings(),
        spec: GenerationSpec | None = None,
        seed: int | None = None,
    ):
        self.settings = settings
        spec = GenerationSpec.from_label_maps(label_maps) if spec is None else spec
        self.maps = load_training_maps(label_maps, spec)
        self.rng = np.random.default_rng(seed)
        self.layer = LabelsToImage(
            spec, settings, seed=int(self.rng.integers(2**31 - 1)), voxel_size=self.maps.voxel_size
        )
        self.spec = self.layer.spec

    def generate(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One random example.

        Returns
        -------
        image : numpy.ndarray of float32, shape ``settings.output_shape``
            Synthetic image in [0, 1] (un-normalised if ``settings.normalise`` is off).
        labels : numpy.ndarray of int32, same shape
            FreeSurfer segmentation values (``spec.label_table`` values; extra-cerebral -> 0).
        affine : numpy.ndarray, shape (4, 4)
            RAS affine placing the output window at the centre of the chosen map.
        """
        choice = int(self.rng.integers(len(self.maps)))
        indices = self.maps.indices[choice : choice + 1]
        params = self.layer.sample_parameters(1, indices.shape[1:])
        image, labels = self.layer.synthesise(indices, params)
        labels = ops.convert_to_numpy(self.layer.to_segmentation(labels[0])).astype(np.int32)
        shift = np.eye(4)
        shift[:3, 3] = (np.array(self.maps.indices.shape[1:]) - np.array(self.settings.output_shape)) / 2.0
        affine = self.maps.affines[choice] @ shift
        return ops.convert_to_numpy(image[0]).astype(np.float32), labels, affine

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        return self

    def __next__(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.generate()
