"""BrainGenerator: seeded, numpy outputs, FreeSurfer labels; works from a folder of maps."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from helpers import make_toy_label_map, toy_affine
from synthseg_bids.core.io import ImageError
from synthseg_bids.generator import BrainGenerator, GenerationSpec, GeneratorSettings

SETTINGS = GeneratorSettings(output_shape=(24, 24, 24))


@pytest.fixture
def toy_folder(tmp_path):
    for seed in range(2):
        data = make_toy_label_map((28, 28, 28), seed=seed)
        nib.save(nib.Nifti1Image(data, toy_affine()), str(tmp_path / f"map_{seed}.nii.gz"))
    return tmp_path


def test_generate_outputs_and_seeding(toy_folder):
    first = BrainGenerator(toy_folder, SETTINGS, seed=0)
    image, labels, affine = first.generate()
    assert image.shape == labels.shape == (24, 24, 24)
    assert image.dtype == np.float32 and labels.dtype == np.int32 and affine.shape == (4, 4)
    assert set(np.unique(labels).tolist()) <= {0, 2, 3, 4, 16, 24, 41, 42, 43}  # 258 -> background
    # the output window is centred on the map's centre
    np.testing.assert_allclose(affine[:3, :3], toy_affine()[:3, :3])
    np.testing.assert_allclose(affine[:3, 3], toy_affine()[:3, 3] + 2.0)
    sequence = [(image, labels), first.generate()[:2]]
    again = BrainGenerator(toy_folder, SETTINGS, seed=0)
    other = BrainGenerator(toy_folder, SETTINGS, seed=1)
    for (a, la), (b, lb, _), (c, _, _) in zip(sequence, [again.generate() for _ in range(2)],
                                              [other.generate() for _ in range(2)]):
        assert np.array_equal(a, b) and np.array_equal(la, lb)
        assert not np.allclose(a, c)


def test_iteration_and_explicit_spec(toy_folder):
    spec = GenerationSpec.from_labels([0, 2, 3, 4, 16, 24, 41, 42, 43, 258])
    generator = BrainGenerator(sorted(toy_folder.iterdir()), SETTINGS, spec=spec, seed=3)
    examples = [example for _, example in zip(range(2), generator)]
    assert len(examples) == 2 and not np.array_equal(examples[0][0], examples[1][0])


def test_unknown_labels_and_empty_folder(toy_folder, tmp_path_factory):
    spec = GenerationSpec.from_labels([0, 2, 3, 41, 42])
    with pytest.raises(ImageError, match="map_0.nii.gz.*unknown labels without priors"):
        BrainGenerator(toy_folder, SETTINGS, spec=spec)
    empty = tmp_path_factory.mktemp("empty")
    with pytest.raises(ImageError, match="contains no label maps"):
        BrainGenerator(empty, SETTINGS)
