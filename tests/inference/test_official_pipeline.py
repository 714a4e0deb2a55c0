"""SynthSeg's published networks in the prediction pipeline (:mod:`synthseg_bids.inference.official`).

References are independent of our code: FreeSurfer 7.3.2's ``mri_synthseg`` script (its Keras 2
networks, ``rescale_volume``, ``get_flip_indices``, ``MakeShape`` and ``postprocess``, through
tests/freesurfer_oracle.py) and its file names. The networks are small random-weight versions
built by FreeSurfer's own functions (tests/official_networks.py); where a test needs a
segmentation with cortex, the segmentation network is replaced by the phantom's per-voxel fake
(tests/inference/inference_fakes.py).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from helpers import mni152, shipped_model
from inference_fakes import phantom, voxel_network
from scipy import ndimage

from freesurfer_oracle import load_oracle, script_path, skip_or_fail
from official_networks import build_networks, write_model_dir
from synthseg_bids.core.io import load_image, save_image
from synthseg_bids.inference import InferenceSettings, ModelChoice, SegmentationResult, Segmenter, prepare_scan
from synthseg_bids.inference.model_choice import MODEL_FILES
from synthseg_bids.inference.official import OfficialSegmenter, parcel_volumes
from synthseg_bids.network.official import (
    DK_PARCELLATION_TABLE,
    QC_GROUP_NAMES,
    OfficialModelError,
    official_label_table,
    qc_group_of,
)

TOL = 1e-4
#: mri_synthseg's arithmetic (float32) and windows (no shifted copies), without its post-processing.
RAW = InferenceSettings(device="cpu", precision="float32", shifts=1, flip=False, smoothing_sigma=0.0,
                        postprocess="none", min_size=32)


@pytest.fixture(scope="module")
def fs():
    return load_oracle()


@pytest.fixture(scope="module")
def nets(fs):
    return build_networks(fs, seed=0)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, nets):
    return write_model_dir(tmp_path_factory.mktemp("models"), nets)


def _noise_scan(tmp_path, shape=(32, 32, 32), seed=0):
    """A scan whose 'head' fills the array, so the network's window is the whole image."""
    data = np.random.default_rng(seed).uniform(10.0, 100.0, shape).astype(np.float32)
    return save_image(data, np.eye(4), tmp_path / "noise.nii.gz"), data


# -- file selection ------------------------------------------------------------------------------


def test_file_names_are_mri_synthsegs():
    text = script_path().read_text() if script_path() else skip_or_fail("mri_synthseg script not installed")
    for name in MODEL_FILES.values():
        assert f"'{name}'" in text, name


def test_model_choice_loads_the_segmenter_of_its_files(tiny_model, model_dir):
    # file selection and its errors: tests/inference/test_model_choice.py
    assert type(ModelChoice(file=tiny_model).load(RAW)) is Segmenter
    official = ModelChoice(file=model_dir / "synthseg_1.0.h5").load(RAW)
    assert isinstance(official, OfficialSegmenter) and official.model_info.description == "SynthSeg 1.0"
    assert set(official.networks) == {"segmentation"}
    pipeline = ModelChoice(folder=model_dir, robust=True, parcellation=True, network_qc=True).load(RAW)
    assert {role: n.path.name for role, n in pipeline.networks.items()} == {
        "segmentation": "synthseg_robust_2.0.h5", "parcellation": "synthseg_parc_2.0.h5", "qc": "synthseg_qc_2.0.h5"}
    with pytest.raises(OfficialModelError, match="parcellation network, not a segmentation or robust"):
        ModelChoice(file=model_dir / "synthseg_parc_2.0.h5").load(RAW)


# -- segmentation networks ----------------------------------------------------------------------


@pytest.mark.parametrize("version", ["2.0", "1.0"])
def test_segmentation_posteriors_equal_freesurfers_network(tmp_path, fs, nets, model_dir, version):
    path, data = _noise_scan(tmp_path)
    seg = OfficialSegmenter(model_dir / MODEL_FILES[version], settings=RAW)
    assert seg.label_table.values.tolist() == official_label_table(version).values.tolist()
    result = seg.segment(path, posteriors=True)
    assert isinstance(result, SegmentationResult) and result.parcellation is None and result.network_qc is None
    image = fs.rescale_volume(data, new_min=0, new_max=1, min_percentile=0.5, max_percentile=99.5)
    reference = nets[version].predict(image[None, ..., None].astype(np.float32), verbose=0)[0]
    assert np.abs(result.posteriors - reference).max() <= TOL
    np.testing.assert_array_equal(result.labels.data, seg.label_table.values[reference.argmax(-1)])


def test_flip_augmentation_swaps_channels_as_freesurfer(tmp_path, fs, nets, model_dir):
    """With flip, ours averages the flipped prediction with channels swapped: FreeSurfer's
    ``get_flip_indices`` (on a neutral/left/right label list) gives the same swap."""
    path, data = _noise_scan(tmp_path, seed=1)
    seg = OfficialSegmenter(model_dir / "synthseg_2.0.h5", settings=dataclasses.replace(RAW, flip=True))
    result = seg.segment(path, posteriors=True)
    table = seg.label_table
    neutral = [s.value for s in table if s.mirror == s.value]
    left = [s.value for s in table if s.hemisphere == "left"]
    right = [next(t.mirror for t in table if t.value == v) for v in left]
    sorted_labels, flip_indices, _ = fs.get_flip_indices(np.array(neutral + left + right), len(neutral))
    assert sorted_labels.tolist() == table.values.tolist()
    image = fs.rescale_volume(data, 0, 1, 0.5, 99.5)[None, ..., None].astype(np.float32)
    direct = nets["2.0"].predict(image, verbose=0)[0]
    mirrored = nets["2.0"].predict(np.ascontiguousarray(image[:, ::-1]), verbose=0)[0][::-1][..., flip_indices]
    assert np.abs(result.posteriors - 0.5 * (direct + mirrored)).max() <= TOL


def test_robust_runs_fast_without_smoothing(tmp_path, nets, model_dir):
    seg = OfficialSegmenter(model_dir / "synthseg_robust_2.0.h5", settings=InferenceSettings(device="cpu", precision="float32"))
    assert (seg.settings.flip, seg.settings.postprocess, seg.settings.smoothing_sigma) == (False, "brain", 0.0)
    assert seg.model_info.description == "SynthSeg 2.0, robust"
    image = np.random.default_rng(2).uniform(0, 1, (1, 32, 32, 32, 1)).astype(np.float32)
    assert np.abs(seg.network.predict(image) - nets["robust"].predict(image, verbose=0)).max() <= TOL


# -- parcellation and QC ------------------------------------------------------------------------


def _phantom_scan(tmp_path):
    image, truth = phantom((40, 40, 40), seed=3)
    affine = np.eye(4)
    affine[:3, 3] = -20
    return save_image(image, affine, tmp_path / "phantom.nii.gz"), truth


def _with_fake_segmentation(official: OfficialSegmenter, settings: InferenceSettings) -> OfficialSegmenter:
    """The phantom's exact per-voxel network in place of the random segmentation network."""
    official.segmenter = Segmenter(voxel_network(), settings)
    return official


def test_parcellation_labels_the_cortex_with_freesurfers_network(tmp_path, fs, nets, model_dir):
    settings = dataclasses.replace(RAW, min_size=16)
    official = _with_fake_segmentation(
        OfficialSegmenter(model_dir / "synthseg_2.0.h5", parcellation=model_dir / "synthseg_parc_2.0.h5",
                          settings=settings),
        settings,
    )
    path, truth = _phantom_scan(tmp_path)
    result = official.segment(path)
    labels, parc = result.labels.data, result.parcellation.data
    np.testing.assert_array_equal(labels, truth)
    cortex = np.isin(labels, (3, 42))
    assert cortex.sum() > 1000
    np.testing.assert_array_equal(parc[~cortex], labels[~cortex])
    assert set(np.unique(parc[cortex])) <= set(DK_PARCELLATION_TABLE.values[1:].tolist())
    # FreeSurfer's network on the window: image + one-hot cortex, smoothed, best parcel
    prepared = prepare_scan(load_image(path), 1.0, official.network.size_multiple, settings)
    start, shape = prepared.window_start, prepared.window_shape
    window = np.zeros(shape, bool)
    box = tuple(slice(-a, -a + n) for a, n in zip(start, labels.shape))
    window[box] = cortex
    one_hot = np.stack([~window, window], axis=-1).astype(np.float32)[None]
    reference = nets["parcellation"].predict(np.concatenate([prepared.network_input(), one_hot], -1), verbose=0)[0]
    reference = ndimage.gaussian_filter(reference, sigma=(0.5, 0.5, 0.5, 0), mode="nearest")[box]
    expected = DK_PARCELLATION_TABLE.values[1 + reference[..., 1:].argmax(-1)]
    assert np.mean(parc[cortex] == expected[cortex]) >= 0.999
    cortex_volume = result.volumes["Left-Cerebral-Cortex"] + result.volumes["Right-Cerebral-Cortex"]
    assert sum(result.parcel_volumes.values()) == pytest.approx(cortex_volume, rel=1e-6)
    assert list(result.parcel_volumes) == DK_PARCELLATION_TABLE.names[1:]


def test_parcel_volumes_equal_freesurfers_postprocess(fs):
    rng = np.random.default_rng(4)
    shape = (20, 20, 20)
    seg_labels = official_label_table("2.0").values
    logits = rng.normal(0, 1, shape + (len(seg_labels),))
    grid = np.indices(shape) - 10
    ball = (grid**2).sum(0) < 64
    logits[ball, 2] += 4.0  # left cortex (value 3) in a ball, so the cortex is large
    logits[..., 0] -= 2.0
    seg_post = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    parc_post = rng.dirichlet(np.ones(len(DK_PARCELLATION_TABLE)), size=shape)
    topology = np.array([s.group for s in official_label_table("2.0")])
    seg, _, volumes = fs.postprocess(
        post_patch_seg=seg_post[None].copy(), post_patch_parc=parc_post[None].copy(), shape=list(shape),
        pad_idx=np.array([0, 0, 0, *shape]), crop_idx=None, labels_segmentation=seg_labels,
        labels_parcellation=DK_PARCELLATION_TABLE.values, aff=np.eye(4), im_res=np.ones(3), fast=True,
        topology_classes=topology, v1=False,
    )
    cortex = seg >= 1000
    assert cortex.sum() > 100
    n_seg = len(seg_labels) - 1
    cortex_volume = volumes[1:1 + n_seg][np.isin(seg_labels[1:], (3, 42))].sum()
    ours = np.array(list(parcel_volumes(parc_post, cortex, DK_PARCELLATION_TABLE, float(cortex_volume)).values()))
    theirs = volumes[1 + n_seg:]
    # the same shares of the cortex ...
    np.testing.assert_allclose(ours / cortex_volume, theirs / theirs.sum(), atol=1e-5)
    assert ours.sum() == pytest.approx(cortex_volume, rel=1e-9)
    # ... but FreeSurfer 7.3.2 (2.0 mode) scales them to volumes[index - 1] after putting the
    # total first, i.e. to the cerebral white matter (2, 41): a known difference (README)
    white_matter = volumes[1:1 + n_seg][np.isin(seg_labels[1:], (2, 41))].sum()
    assert theirs.sum() == pytest.approx(white_matter, abs=0.1)
    # and the parcels written into the cortex are the best non-background channel, as FreeSurfer's
    np.testing.assert_array_equal(seg[cortex], DK_PARCELLATION_TABLE.values[1 + parc_post[..., 1:].argmax(-1)][cortex])


def test_network_qc_equals_freesurfers_crop_and_regressor(tmp_path, fs, nets, model_dir):
    size = 32
    official = _with_fake_segmentation(
        OfficialSegmenter(model_dir / "synthseg_2.0.h5", qc=model_dir / "synthseg_qc_2.0.h5", settings=RAW,
                          qc_size=size),
        RAW,
    )
    path, _ = _phantom_scan(tmp_path)
    result = official.segment(path)
    assert list(result.network_qc) == list(official.networks["qc"].qc_names)
    # FreeSurfer's MakeShape crops the channel indices; then their QC groups, one-hot
    tf = fs.tf
    table = official.label_table
    channels = table.index_of(result.labels_conformed.data).astype(np.int32)
    cropped = fs.MakeShape(size)([tf.constant(channels[None]), tf.constant([list(channels.shape)], dtype="int32")])
    one_hot = tf.one_hot(qc_group_of(table.values)[cropped.numpy()], depth=9, axis=-1).numpy()
    reference = np.clip(nets["qc"].predict(one_hot, verbose=0)[0, 1:], 0, 1)
    np.testing.assert_allclose(list(result.network_qc.values()), reference, atol=1e-4 + 5e-5)
    assert all(0 <= v <= 1 for v in result.network_qc.values())


# -- a trained network end to end: our shipped model, exported, in FreeSurfer's pipeline and ours ----


#: The MNI152 head (x 26-170, y 27-207, z 0-154 of 197 x 233 x 189) in a 160 x 192 x 160 box: both
#: pipelines then analyse a window of that size, which halves their memory (about 4 GB each).
MNI_BOX = (slice(18, 178), slice(21, 213), slice(0, 160))


def _mni152(tmp_path):
    t1 = mni152()
    affine = t1.affine.copy()
    affine[:3, 3] += affine[:3, :3] @ [box.start for box in MNI_BOX]
    data = np.asarray(t1.get_fdata(), np.float32)[MNI_BOX]
    return save_image(data, affine, tmp_path / "mni152_T1w.nii.gz")


@pytest.mark.slow
@pytest.mark.parametrize("fast", [False, True], ids=["default", "fast"])
def test_shipped_model_parity_with_freesurfer_on_mni152(tmp_path, fs, fast):
    import nibabel as nib
    import pandas as pd

    from official_networks import freesurfer_predict
    from synthseg_bids.network.official import export_h5

    model = shipped_model()
    scan = _mni152(tmp_path)
    exported = export_h5(model, tmp_path / "shipped.h5")
    reference = freesurfer_predict(fs, scan, exported, tmp_path / "fs", fast=fast, features=16)
    theirs = np.asarray(nib.load(reference["labels"]).dataobj).astype(np.int32)
    parity = dict(device="cpu", precision="float32", shifts=1)  # mri_synthseg's arithmetic and windows
    settings = InferenceSettings.fast(**parity) if fast else InferenceSettings(**parity)
    result = OfficialSegmenter(exported, settings=settings).segment(scan)
    ours = result.labels.data
    assert ours.shape == theirs.shape
    dice = {}
    for s in result.label_table.structures[1:]:
        a, b = ours == s.value, theirs == s.value
        if a.any() or b.any():
            dice[s.name] = 2.0 * np.sum(a & b) / (a.sum() + b.sum())
    fs_volumes = pd.read_csv(reference["volumes"]).iloc[0]
    relative = {name: (result.volumes[name] - fs_volumes[name]) / fs_volumes[name]
                for name in dice if fs_volumes[name] > 0}
    mode = "fast" if fast else "default"
    print(f"\nMNI152, shipped model, {mode}: mean Dice {np.mean(list(dice.values())):.4f} over {len(dice)} structures, "
          f"min {min(dice.values()):.4f} ({min(dice, key=dice.get)}); equal labels {np.mean(ours == theirs):.5f}")
    print(f"volumes: median |relative difference| {np.median(np.abs(list(relative.values()))):.4f}, "
          f"max {max(np.abs(list(relative.values()))):.4f} ({max(relative, key=lambda k: abs(relative[k]))}); "
          f"total intracranial {result.volumes['total intracranial']:.0f} vs {fs_volumes['total intracranial']:.0f}")
    for name in sorted(dice, key=dice.get)[:5]:
        print(f"  {name}: Dice {dice[name]:.4f}, volume {relative.get(name, float('nan')):+.4f}")
    assert np.mean(list(dice.values())) >= 0.95


# -- Nipype: the SynthSeg interface and init_segmentation_wf pass the choice through ---------------


def test_segmentation_workflow_with_model_dir(tmp_path, model_dir, monkeypatch):
    import hashlib
    import json

    import nibabel as nib

    import synthseg_bids.inference.official as official
    from synthseg_bids.workflows.segmentation import init_segmentation_wf

    monkeypatch.setattr(official, "QC_SHAPE", 32)
    path, _ = _phantom_scan(tmp_path)
    wf = init_segmentation_wf(model=ModelChoice(folder=model_dir, parcellation=True, network_qc=True), device="cpu",
                              inference_settings={"min_size": 32, "flip": False}, name="official_wf")
    wf.base_dir = str(tmp_path / "work")
    wf.inputs.inputnode.in_file = str(path)
    graph = wf.run(plugin="Linear")
    outputs = {node.name: node.result.outputs for node in graph.nodes()}
    segment = outputs["segment"]
    parc = np.asarray(nib.load(segment.out_parc_dseg).dataobj)
    labels = np.asarray(nib.load(segment.out_dseg).dataobj)
    cortex = np.isin(labels, (3, 42))
    np.testing.assert_array_equal(parc[~cortex], labels[~cortex])
    assert set(np.unique(parc[cortex])) <= set(DK_PARCELLATION_TABLE.values[1:].tolist())
    results = json.loads(open(segment.out_results).read())
    assert list(results["network_qc"]) == list(QC_GROUP_NAMES)
    assert len(results["network_qc"]) == 8 and len(results["parcel_volumes"]) == 68
    networks = {n["role"]: n for n in results["segmentation"]["model"]["networks"]}
    assert networks["segmentation"]["kind"] == "segmentation"
    assert networks["parcellation"]["description"] == "SynthSeg 2.0, parcellation"
    digest = hashlib.sha256((model_dir / "synthseg_qc_2.0.h5").read_bytes()).hexdigest()
    assert networks["qc"]["sha256"] == digest
    import pandas as pd

    table = pd.read_csv(outputs["volumes"].out_tsv, sep="\t")
    assert [c for c in table.columns if c.startswith("qc_network_")] == [
        "qc_network_" + n.replace("+", "_").replace(" ", "_") for n in QC_GROUP_NAMES]
    np.testing.assert_allclose(table.loc[0, [f"qc_network_{n.replace('+', '_').replace(' ', '_')}"
                                              for n in QC_GROUP_NAMES]].astype(float),
                               list(results["network_qc"].values()), atol=1e-4)
    assert list(table.columns[-68:]) == [n.replace("-", "_") for n in DK_PARCELLATION_TABLE.names[1:]]
