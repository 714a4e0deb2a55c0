"""SynthSeg's published .h5 networks: parity with FreeSurfer's own Keras 2 code, inference of the
architecture, rejection of bad files, and export of our model for mri_synthseg.

The oracle is FreeSurfer 7.3.2's ``mri_synthseg`` script (tests/freesurfer_oracle.py): its own
``build_model`` / ``unet`` build each network in tf-keras, with seeded random weights (batch-norm
statistics included), and write it with ``model.save`` (full-model layout) and ``save_weights``
(weights-only layout); our reader builds the network in Keras 3 from each file, and both run on the
same input. Spatial inputs are small (32^3; the QC crop is reduced from 224^3 to 32^3 by patching
the oracle's ``MakeShape`` target; the regressor is fully convolutional, and the crop itself is
checked against ``MakeShape`` separately), so each test takes under 30 s on two cores (the file
about two and a half minutes on a busy machine).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from freesurfer_oracle import load_oracle, patch_unet_features, randomise_weights
from synthseg_bids.core.labels import default_label_table
from synthseg_bids.network import ModelInfo, NetworkSettings, build_unet, save_model
from synthseg_bids.network.keras2_h5 import read_weights, write_weights
from synthseg_bids.network.official import (
    DK_PARCELLATION_TABLE,
    QC_GROUP_NAMES,
    SEGMENTATION_KINDS,
    OfficialModelError,
    StageArchitecture,
    expected_weights,
    export_h5,
    is_keras2_h5,
    mri_synthseg_incompatibility,
    official_label_table,
    qc_group_of,
    qc_network_input,
    read_official,
)

SIZE = 32
LABELS_2 = official_label_table("2.0").values
LABELS_1 = official_label_table("1.0").values
DENOISER_GROUPS = np.arange(5)  # np.unique of SynthSeg's synthseg_denoiser_labels_2.0.npy
PARITY_TOL = 1e-4
# tf-keras warns that .h5 is a legacy format: writing that format is the point here
pytestmark = pytest.mark.filterwarnings("ignore:You are saving your model as an HDF5 file:UserWarning")
#: mri_synthseg's 2.0 label list (its synthseg_segmentation_labels_2.0.npy, the order that
#: get_flip_indices expects: 19 unpaired labels, then left, then right structures)
_SYNTHSEG_2_LABEL_LIST = np.array(
    [0, 14, 15, 16, 24] + [0] * 14 + [2, 3, 4, 5, 7, 8, 10, 11, 12, 13, 17, 18, 2, 26, 28, 0, 4, 5]
    + [41, 42, 43, 44, 46, 47, 49, 50, 51, 52, 53, 54, 41, 58, 60, 0, 43, 44]
)


@pytest.fixture(scope="module")
def fs():
    return load_oracle()


@pytest.fixture(scope="module")
def no_weights(tmp_path_factory, fs):
    """A Keras 2 weights file with no layers: build_model's load_weights(by_name=True) loads nothing."""
    path = tmp_path_factory.mktemp("empty") / "empty.h5"
    with h5py.File(path, "w") as handle:
        handle.attrs["backend"] = b"tensorflow"
        handle.attrs["keras_version"] = b"2.21.0"
        handle.attrs["layer_names"] = np.array([], dtype="S1")
    return str(path)


def _image(seed: int, channels: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(0.0, 1.0, (1, SIZE, SIZE, SIZE, channels)).astype(np.float32)


def _save_both(net, folder, stem):
    full, weights = folder / f"{stem}_model.h5", folder / f"{stem}_weights.h5"
    net.save(full)
    net.save_weights(weights)
    return full, weights


def _compare(ours: np.ndarray, reference: np.ndarray, what: str) -> dict:
    ours, reference = np.asarray(ours), np.asarray(reference)
    assert ours.shape == reference.shape, what
    diff = float(np.abs(ours - reference).max())
    agree = float(np.mean(ours.argmax(-1) == reference.argmax(-1)))
    print(f"{what}: max abs diff {diff:.3g}, equal argmax {100 * agree:.3f} %")
    assert diff <= PARITY_TOL, f"{what}: max abs diff {diff}"
    assert agree >= 0.999, f"{what}: only {100 * agree:.3f} % equal argmax"
    return {"diff": diff, "agree": agree}


def _fs_segmentation_net(fs, no_weights, labels, *, robust=False, do_parcellation=False, do_qc=False):
    return fs.build_model(
        model_file_segmentation=no_weights,
        model_file_parcellation=no_weights,
        model_file_qc=no_weights,
        labels_segmentation=np.asarray(labels),
        labels_denoiser=DENOISER_GROUPS,
        labels_parcellation=DK_PARCELLATION_TABLE.values,
        labels_qc=qc_group_of(labels),
        flip_indices=None,
        robust=robust,
        do_parcellation=do_parcellation,
        do_qc=do_qc,
    )


# --------------------------------------------------------------------------------------------------
# parity, one test per kind, both layouts
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version, labels", [("2.0", LABELS_2), ("1.0", LABELS_1)])
def test_segmentation_parity(tmp_path, fs, no_weights, version, labels):
    net = _fs_segmentation_net(fs, no_weights, labels)
    randomise_weights(net, np.random.default_rng(1))
    reference_net = fs.keras.Model(net.inputs, net.get_layer("unet_prediction").output)
    image = _image(2)
    reference = reference_net.predict(image, verbose=0)
    for path in _save_both(net, tmp_path, f"seg{version}"):
        official = read_official(path, expect=SEGMENTATION_KINDS)
        assert (official.kind, official.version) == ("segmentation", version)
        assert official.description == f"SynthSeg {version}"
        assert official.label_table.values.tolist() == sorted(labels.tolist())
        assert official.architecture.features == 24 and official.architecture.n_levels == 5
        assert official.network.size_multiple == 16 and official.resolution_mm == 1.0
        _compare(official.model(image), reference, f"SynthSeg {version} ({path.name})")


def test_robust_cascade_parity_per_stage(tmp_path, fs, no_weights):
    net = _fs_segmentation_net(fs, no_weights, LABELS_2, robust=True)
    randomise_weights(net, np.random.default_rng(3))
    stages = ("unet_prediction", "l2l_prediction", "unet2_prediction")
    reference_net = fs.keras.Model(net.inputs, [net.get_layer(name).output for name in stages])
    image = _image(4)
    references = reference_net.predict(image, verbose=0)
    import keras

    for path in _save_both(net, tmp_path, "robust"):
        official = read_official(path, expect="robust")
        assert (official.kind, official.description) == ("robust", "SynthSeg 2.0, robust")
        first, denoiser, second = official.architecture.stages
        assert (denoiser.prefix, denoiser.features, denoiser.kernel_size) == ("l2l", 16, 5)
        assert denoiser.skip_connections == (True, True, False, False)
        assert (first.n_outputs, second.input_channels, second.n_outputs) == (5, 6, 33)
        ours = keras.Model(official.model.input, [official.model.get_layer(name).output for name in stages])
        outputs = ours(image)
        for name, mine, theirs in zip(stages, outputs, references):
            _compare(mine, theirs, f"robust stage {name} ({path.name})")
        np.testing.assert_array_equal(np.asarray(official.model(image)), np.asarray(outputs[-1]))


def _fs_branch(fs, net, first: str, last: str):
    """A branch of FreeSurfer's network (layer ``first``'s input to ``last``'s output) and the
    whole network giving (the branch's input, its output)."""
    branch_input, branch_output = net.get_layer(first).input, net.get_layer(last).output
    return fs.keras.Model(branch_input, branch_output), fs.keras.Model(net.inputs, [branch_input, branch_output])


def test_parcellation_parity(tmp_path, fs, no_weights):
    net = _fs_segmentation_net(fs, no_weights, LABELS_2, do_parcellation=True)
    randomise_weights(net, np.random.default_rng(5))
    # FreeSurfer's own path: its segmentation -> cortex mask -> one-hot, concatenated with the image
    parc_net, pipeline = _fs_branch(fs, net, "unet_parc_conv_downarm_0_0", "unet_parc_prediction")
    image = _image(6)
    fs_input, fs_parc = pipeline.predict(image, verbose=0)
    np.testing.assert_array_equal(fs_input[..., :1], image)
    assert np.all(fs_input[..., 1] + fs_input[..., 2] == 1)
    cortex = fs_input[..., 2:3]
    # and an independent cortex mask that covers a large part of the volume
    grid = np.indices((SIZE,) * 3) - SIZE / 2
    blob = (np.sqrt((grid**2).sum(0)) < SIZE / 3).astype(np.float32)[None, ..., None]
    blob_input = np.concatenate([image, 1 - blob, blob], axis=-1)
    fs_blob = parc_net.predict(blob_input, verbose=0)
    for path in _save_both(parc_net, tmp_path, "parc"):
        official = read_official(path, expect="parcellation")
        assert (official.kind, official.description) == ("parcellation", "SynthSeg 2.0, parcellation")
        assert official.label_table is DK_PARCELLATION_TABLE and official.architecture.input_channels == 3
        _compare(official.model([image, cortex]), fs_parc, f"parcellation, FreeSurfer's mask ({path.name})")
        _compare(official.model([image, blob]), fs_blob, f"parcellation, sphere mask ({path.name})")


def test_qc_parity(tmp_path, fs, no_weights, monkeypatch):
    original_build = fs.MakeShape.build

    def small_crop(layer, input_shape):  # mri_synthseg crops to 224^3; the regressor is fully convolutional
        layer.target_shape = SIZE
        original_build(layer, input_shape)

    monkeypatch.setattr(fs.MakeShape, "build", small_crop)
    net = _fs_segmentation_net(fs, no_weights, LABELS_2, do_qc=True)
    randomise_weights(net, np.random.default_rng(7))
    qc_net, pipeline = _fs_branch(fs, net, "qc_conv_downarm_0_0", "qc_final_pred")
    image = _image(8)
    groups, reference = pipeline.predict([image, np.array([[SIZE] * 3])], verbose=0)
    assert groups.shape == (1, SIZE, SIZE, SIZE, 9) and len(np.unique(groups.argmax(-1))) > 1
    import keras

    for path in _save_both(qc_net, tmp_path, "qc"):
        official = read_official(path, expect="qc")
        assert (official.kind, official.description, official.qc_names) == ("qc", "SynthSeg 2.0, QC", QC_GROUP_NAMES)
        stage = official.architecture.stages[0]
        assert (stage.n_levels, stage.kernel_size, stage.features, stage.residual) == (4, 5, 24, True)
        raw_model = keras.Model(official.model.input, official.model.get_layer("qc_final_pred").output)
        raw = np.asarray(raw_model(groups))
        diff = float(np.abs(raw - reference).max())
        print(f"QC raw regression ({path.name}): max abs diff {diff:.3g}")
        assert diff <= PARITY_TOL
        scores = np.asarray(official.model(groups))
        np.testing.assert_allclose(scores, np.clip(reference[:, 1:], 0, 1), atol=PARITY_TOL)
        assert scores.shape == (1, 8)


@pytest.mark.parametrize("case", ["crop", "pad", "empty"])
def test_qc_network_input_matches_mri_synthseg(fs, case):
    """Crop/pad around the segmentation, QC groups and one-hot: FreeSurfer's MakeShape,
    ConvertLabels and one_hot layers on the same channel-index volume."""
    import tensorflow as tf

    rng = np.random.default_rng(16)
    channels = np.zeros((30, 36, 28), np.int32)
    if case != "empty":
        channels[3:20, 9:33, 5:27] = rng.integers(0, len(LABELS_2), (17, 24, 22))
    size = {"crop": 12, "pad": 48, "empty": 20}[case]
    crop = fs.MakeShape(size)([tf.constant(channels[None]), tf.constant([list(channels.shape)], tf.int32)])
    values = fs.ConvertLabels(np.arange(len(LABELS_2)), LABELS_2)(crop)
    groups = fs.ConvertLabels(LABELS_2, qc_group_of(LABELS_2))(values)
    reference = tf.one_hot(tf.cast(groups, "int32"), depth=9, axis=-1).numpy()
    ours = qc_network_input(channels, LABELS_2, size=size)
    assert ours.shape == reference.shape == (1, size, size, size, 9)
    np.testing.assert_array_equal(ours, reference)


# --------------------------------------------------------------------------------------------------
# architecture inference
# --------------------------------------------------------------------------------------------------


def test_architecture_inferred_from_non_default_unet(tmp_path, fs):
    labels = [0, 2, 3, 4, 41, 42, 43]
    net = fs.unet(nb_features=8, input_shape=[None, None, None, 1], nb_levels=3, conv_size=5, nb_labels=len(labels),
                  feat_mult=1.5, activation="elu", nb_conv_per_level=3, batch_norm=-1, name="unet")
    randomise_weights(net, np.random.default_rng(9))
    image = _image(10)
    reference = net.predict(image, verbose=0)
    full, weights = _save_both(net, tmp_path, "custom")
    with pytest.raises(OfficialModelError, match="segments 7 labels.*give its label list"):
        read_official(full)
    for path in (full, weights):
        official = read_official(path, labels=labels[::-1])
        arch = official.architecture
        assert (arch.kind, arch.version, arch.n_levels, arch.conv_per_level, arch.features, arch.kernel_size) == (
            "segmentation", "custom", 3, 3, 8, 5)
        assert arch.stages[0].level_features == (8, 12, 18)  # round(8 * 1.5 ** level)
        assert (arch.input_channels, arch.n_outputs, official.size_multiple) == (1, 7, 4)
        assert official.label_table.values.tolist() == labels
        _compare(official.model(image), reference, f"custom U-Net ({path.name})")


def test_reads_mri_synthseg_flip_network_with_nested_model(tmp_path, fs, no_weights):
    """mri_synthseg's default network runs the U-Net a second time as a nested model (on the
    flipped image): saved whole, its layers appear twice (flat, and inside the nested model)."""
    labels, flip, _ = fs.get_flip_indices(_SYNTHSEG_2_LABEL_LIST, 19)
    net = fs.build_model(no_weights, no_weights, no_weights, labels, DENOISER_GROUPS, None, None, flip,
                         robust=False, do_parcellation=False, do_qc=False)
    randomise_weights(net, np.random.default_rng(17))
    full, _ = _save_both(net, tmp_path, "flip")
    with h5py.File(full, "r") as handle:
        nested = [n for n in handle["model_weights"].attrs["layer_names"] if "model" in str(n)]
    assert nested, "expected a nested model in the saved network"
    image = _image(18)
    reference = fs.keras.Model(net.inputs, net.get_layer("unet_prediction").output).predict(image, verbose=0)
    _compare(read_official(full).model(image), reference, "U-Net of mri_synthseg's flip network")


def test_reads_chunked_attributes_and_scoped_weight_names(small_files, tmp_path):
    """Keras splits long name lists into layer_names0, layer_names1, ...; graph builds may give
    variables scoped names ('unet_bn_down_0_1/gamma:0'): both are read as Keras 2 reads them."""
    reference = read_weights(small_files / "seg.h5")

    def quirks(handle):
        names = np.asarray(handle.attrs["layer_names"]).astype("S")
        del handle.attrs["layer_names"]
        handle.attrs["layer_names0"], handle.attrs["layer_names1"] = names[:5], names[5:]
        group = handle["unet_bn_down_0"]
        renamed = []
        for name in group.attrs["weight_names"]:
            name = name.decode() if isinstance(name, bytes) else name
            new = name.replace("unet_bn_down_0/", "unet_bn_down_0_1/")
            group.move(name, new)
            renamed.append(new.encode())
        group.attrs["weight_names"] = np.array(renamed, dtype="S")

    edited = read_weights(_edited_copy(small_files, tmp_path, quirks))
    assert edited.shapes() == reference.shapes()
    for layer, variables in reference.layers.items():
        for variable, value in variables.items():
            np.testing.assert_array_equal(edited.layers[layer][variable], value)


def test_is_keras2_h5(tmp_path, fs):
    net = fs.unet(nb_features=4, input_shape=[None, None, None, 1], nb_levels=2, conv_size=3, nb_labels=3,
                  nb_conv_per_level=1, batch_norm=-1, name="unet")
    full, weights = _save_both(net, tmp_path, "tiny")
    text = tmp_path / "text.h5"
    text.write_text("not a network\n")
    assert is_keras2_h5(full) and is_keras2_h5(weights)
    data = tmp_path / "data.h5"
    with h5py.File(data, "w") as handle:
        handle["volume"] = np.zeros(3)
    assert not is_keras2_h5(text) and not is_keras2_h5(data) and not is_keras2_h5(tmp_path / "absent.h5")
    with pytest.raises(ValueError, match="expect must name kinds"):
        read_official(full, expect="segmenter")
    assert read_weights(full).layout == "full" and read_weights(weights).layout == "weights"


# --------------------------------------------------------------------------------------------------
# bad files: one line naming the file, nothing written
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_files(tmp_path_factory):
    """A small segmentation U-Net and a small parcellation U-Net in the weights-only layout,
    written without the oracle (so that the refusal tests run without tf-keras): the segmentation
    network is one of our U-Nets exported with export_h5 (checked against FreeSurfer's loader
    above), the parcellation network random arrays of the shapes that network has."""
    folder = tmp_path_factory.mktemp("small")
    rng = np.random.default_rng(11)
    settings, table = NetworkSettings(n_levels=3, base_features=4), default_label_table()
    model = build_unet(settings, len(table), seed=11)
    export_h5(save_model(folder / "seg.npz", model, ModelInfo(network=settings, label_table=table)), folder / "seg.h5")
    parc = StageArchitecture(prefix="unet_parc", n_levels=3, conv_per_level=2, kernel_size=3, level_features=(4, 8, 16),
                             decoder_features=(8, 4), skip_connections=(True, True), input_channels=3, n_outputs=69)
    write_weights(folder / "parc.h5", {layer: {name: rng.normal(0, 0.1, shape) for name, shape in variables.items()}
                                       for layer, variables in expected_weights(parc).items()})
    return folder


def _refused(path, match, **kwargs):
    before = sorted(p.name for p in path.parent.iterdir())
    with pytest.raises(OfficialModelError) as info:
        read_official(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(path.resolve())), message
    assert re.search(match, message), message
    assert sorted(p.name for p in path.parent.iterdir()) == before  # nothing written
    return message


def _edited_copy(small_files, tmp_path, edit):
    path = tmp_path / "edited.h5"
    shutil.copy(small_files / "seg.h5", path)
    with h5py.File(path, "r+") as handle:
        edit(handle)
    return path


def test_refuses_a_file_that_is_not_hdf5(tmp_path):
    path = tmp_path / "synthseg_2.0.h5"
    path.write_bytes(b"<html>404 Not Found</html>\n")
    _refused(path, "is not an HDF5 file")


def test_refuses_a_truncated_file(small_files, tmp_path):
    path = tmp_path / "synthseg_2.0.h5"
    path.write_bytes((small_files / "seg.h5").read_bytes()[:4000])
    _refused(path, "is not a readable Keras .h5 file")


def test_refuses_hdf5_that_is_not_a_network(tmp_path):
    path = tmp_path / "data.h5"
    with h5py.File(path, "w") as handle:
        handle["volume"] = np.zeros((4, 4, 4), np.float32)
    _refused(path, "not a Keras network")


def test_refuses_a_keras_network_that_is_not_synthseg(tmp_path, fs):
    other = fs.keras.Sequential([fs.keras.layers.Input((8,)), fs.keras.layers.Dense(2, name="dense")])
    other.save_weights(tmp_path / "classifier.h5")
    _refused(tmp_path / "classifier.h5", r"holds Keras weights but no SynthSeg network")


def test_refuses_missing_layers(small_files, tmp_path):
    def drop(handle):
        names = [n if isinstance(n, bytes) else n.encode() for n in handle.attrs["layer_names"]]
        handle.attrs["layer_names"] = np.array([n for n in names if n != b"unet_conv_uparm_4_1"], dtype="S")
        del handle["unet_conv_uparm_4_1"]

    _refused(_edited_copy(small_files, tmp_path, drop), "layers missing: unet_conv_uparm_4_1")


def test_refuses_wrong_shapes(small_files, tmp_path):
    def reshape(handle):
        group = handle["unet_conv_downarm_1_1"]
        del group["unet_conv_downarm_1_1/kernel:0"]
        group["unet_conv_downarm_1_1/kernel:0"] = np.zeros((3, 3, 3, 5, 8), np.float32)

    _refused(_edited_copy(small_files, tmp_path, reshape), r"unet_conv_downarm_1_1/kernel has shape \(3, 3, 3, 5, 8\)")


def test_refuses_nan_weights(small_files, tmp_path):
    def poison(handle):
        dataset = handle["unet_bn_up_0/unet_bn_up_0/moving_variance:0"]
        values = dataset[()]
        values[1] = np.nan
        dataset[...] = values

    _refused(_edited_copy(small_files, tmp_path, poison), "unet_bn_up_0/moving_variance has NaN")


def test_refuses_a_parcellation_file_as_segmentation_model(small_files):
    message = _refused(small_files / "parc.h5", "is a SynthSeg parcellation network, not a segmentation or robust",
                       expect=SEGMENTATION_KINDS)
    assert "parc.h5" in message
    assert read_official(small_files / "parc.h5", expect="parcellation").kind == "parcellation"


# --------------------------------------------------------------------------------------------------
# export for mri_synthseg
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("change, problem", [
    ({"normalisation": "instance"}, "normalisation 'instance' cannot be exported"),
    ({"activation": "relu"}, "activation 'relu' cannot be exported"),
])
def test_export_refuses_what_neurite_cannot_build(tmp_path, change, problem):
    settings = NetworkSettings(n_levels=2, base_features=2, **change)
    table = default_label_table()
    npz = save_model(tmp_path / "model.npz", build_unet(settings, len(table), seed=0),
                     ModelInfo(network=settings, label_table=table))
    with pytest.raises(ValueError, match=problem):
        export_h5(npz, tmp_path / "out.h5")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz"]


def _random_statistics(model, rng):
    for variable in model.weights:
        value = np.asarray(variable)
        if variable.path.endswith(("moving_variance", "gamma")):
            variable.assign(rng.uniform(0.5, 1.5, value.shape).astype(np.float32))
        elif variable.path.endswith(("moving_mean", "beta", "bias")):
            variable.assign(rng.normal(0, 0.1, value.shape).astype(np.float32))


def test_export_loads_into_freesurfer_unet(tmp_path, fs):
    settings = NetworkSettings(n_levels=3, base_features=8)
    table = default_label_table()  # our channel order (CSF after the accumbens), not sorted
    model = build_unet(settings, len(table), seed=12)
    _random_statistics(model, np.random.default_rng(13))
    npz = save_model(tmp_path / "model.npz", model, ModelInfo(network=settings, label_table=table))
    out = export_h5(npz, tmp_path / "exported.h5")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exported.h5", "model.npz"]
    image = _image(14)
    ours = np.asarray(model(image))[..., np.argsort(table.values)]  # into sorted label order
    for by_name in (True, False):
        net = fs.unet(nb_features=8, input_shape=[None, None, None, 1], nb_levels=3, conv_size=3, nb_labels=33,
                      feat_mult=2, activation="elu", nb_conv_per_level=2, batch_norm=-1, name="unet")
        net.load_weights(str(out), by_name=by_name)
        _compare(ours, net.predict(image, verbose=0), f"export loaded by FreeSurfer's unet (by_name={by_name})")


def test_export_of_shipped_model_runs_in_mri_synthseg_network(tmp_path, fs, monkeypatch):
    """The shipped model in mri_synthseg's own build_model (5 levels, the 2.0 labels; its 16 base
    features instead of the 24 that mri_synthseg hard-codes)."""
    import synthseg_bids
    from synthseg_bids.network import load_model

    shipped = Path(synthseg_bids.__file__).parent / "data" / "default_model.npz"
    model, info = load_model(shipped)
    out = export_h5(shipped, tmp_path / "synthseg_2.0.h5")
    assert mri_synthseg_incompatibility(read_official(out).architecture) == (
        "mri_synthseg builds 24 base features, this network has 16")
    patch_unet_features(monkeypatch, fs, info.network.base_features)
    net = _fs_segmentation_net(fs, str(out), LABELS_2)
    reference = fs.keras.Model(net.inputs, net.get_layer("unet_prediction").output).predict(_image(15), verbose=0)
    ours = np.asarray(model(_image(15)))[..., np.argsort(info.label_table.values)]
    _compare(ours, reference, "shipped model exported, in mri_synthseg's build_model")


def test_label_data_match_synthseg_files(shared_data):
    folder = shared_data / "labels_classes_priors"
    seg = np.load(folder / "synthseg_segmentation_labels_2.0.npy")
    np.testing.assert_array_equal(_SYNTHSEG_2_LABEL_LIST, seg)
    np.testing.assert_array_equal(np.unique(seg), LABELS_2)
    np.testing.assert_array_equal(np.unique(np.load(folder / "synthseg_segmentation_labels.npy")), LABELS_1)
    np.testing.assert_array_equal(qc_group_of(seg), np.load(folder / "synthseg_qc_labels_2.0.npy"))
    parc_values = np.load(folder / "synthseg_parcellation_labels.npy")
    parc_names = np.load(folder / "synthseg_parcellation_names.npy")
    np.testing.assert_array_equal(DK_PARCELLATION_TABLE.values, parc_values)
    assert DK_PARCELLATION_TABLE.names[1:] == parc_names[1:].tolist()
    qc_names = np.load(folder / "synthseg_qc_names_2.0.npy")
    groups = np.load(folder / "synthseg_qc_labels_2.0.npy")
    assert [qc_names[groups == g][0] for g in range(1, 9)] == list(QC_GROUP_NAMES)
