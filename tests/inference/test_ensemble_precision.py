"""Test-time ensembles of shifted windows, and the network's precision (float32 / bfloat16)."""

from __future__ import annotations

import numpy as np
import pytest
from inference_fakes import phantom, voxel_network

from synthseg_bids.core.io import Image, load_image
from synthseg_bids.core.labels import default_label_table
from synthseg_bids.inference import InferenceSettings, Network, Segmenter
from synthseg_bids.inference import precision as precision_module
from synthseg_bids.inference.device import DeviceError
from synthseg_bids.inference.precision import bfloat16_support, resolve_precision


def _blocky_network(multiple: int = 4) -> Network:
    """Posteriors from the block mean of the input over ``multiple``-voxel cubes: they depend on the blocks' phase."""
    table = default_label_table()
    rng = np.random.default_rng(7)
    weights = rng.normal(size=len(table)).astype(np.float32)

    def predict(batch: np.ndarray) -> np.ndarray:
        x = batch[0, ..., 0]
        m = multiple
        blocks = x.reshape(x.shape[0] // m, m, x.shape[1] // m, m, x.shape[2] // m, m).mean(axis=(1, 3, 5))
        coarse = np.repeat(np.repeat(np.repeat(blocks, m, 0), m, 1), m, 2)
        logits = 8.0 * coarse[..., None] * weights
        logits -= logits.max(axis=-1, keepdims=True)
        out = np.exp(logits)
        return (out / out.sum(axis=-1, keepdims=True)).astype(np.float32)[None]

    return Network(predict=predict, label_table=table, resolution_mm=1.0, size_multiple=multiple)


def _window_posteriors(segmenter: Segmenter, batch: np.ndarray) -> np.ndarray:
    """The averaged posteriors of :meth:`Segmenter.predict_window` as one ``(X, Y, Z, K)`` array."""
    combined = segmenter.predict_window(batch)
    slabs = [segmenter.device_posteriors.backend.host(part) for part in combined.posteriors]
    return np.moveaxis(np.concatenate(slabs, axis=2), 0, -1)


def _brute_force_mean(predict, batch: np.ndarray, offsets: list[int]) -> np.ndarray:
    """Per voxel, the mean over the copies covering it of the network on the moved content, moved back."""
    _, x, y, z, _ = batch.shape
    total, count = 0.0, np.zeros((x, y, z, 1))
    for d in offsets:
        copy = np.zeros_like(batch)
        copy[:, : x - d, : y - d, : z - d] = batch[:, d:, d:, d:]
        back = np.zeros(batch.shape[1:4] + (predict(copy).shape[-1],))
        back[d:, d:, d:] = predict(copy)[0, : x - d, : y - d, : z - d]
        covered = np.zeros((x, y, z, 1))
        covered[d:, d:, d:] = 1
        total, count = total + back, count + covered
    return total / count


@pytest.mark.parametrize(("shifts", "offsets"), [(2, [0, 2]), (3, [0, 1, 3])])
def test_shifted_windows_average_the_network_on_moved_copies(shifts, offsets):
    """Brute force: copy k is the content moved by round(k m / n) voxels, averaged where it covers."""
    network = _blocky_network(multiple=4)
    batch = np.random.default_rng(0).random((1, 12, 8, 16, 1)).astype(np.float32)
    settings = InferenceSettings(flip=False, shifts=shifts, smoothing_sigma=0.0, postprocess="none")
    got = _window_posteriors(Segmenter(network, settings), batch)
    np.testing.assert_allclose(got, _brute_force_mean(network.predict, batch, offsets), atol=1e-6)
    single = _window_posteriors(Segmenter(network, InferenceSettings(flip=False, shifts=1, smoothing_sigma=0.0,
                                                                    postprocess="none")), batch)
    assert np.abs(single - got).max() > 1e-3  # the phases differ for this network: the ensemble is not a no-op
    np.testing.assert_allclose(got[:1, :, :], single[:1, :, :], atol=1e-6)  # the first plane: the window alone


def test_shifted_windows_of_a_unet_in_slabs_equal_its_whole_passes(tiny_model):
    """The TensorFlow U-Net adds each copy's y slabs into the mean: the same as whole passes."""
    settings = InferenceSettings(device="cpu", precision="float32", flip=False, shifts=2, smoothing_sigma=0.0,
                                 postprocess="none")
    segmenter = Segmenter(tiny_model, settings)
    assert segmenter.network.slabs is not None  # the slabbed path is the one tested
    batch = np.random.default_rng(1).random((1, 20, 70, 18, 1)).astype(np.float32)  # several 32-plane slabs
    got = _window_posteriors(segmenter, batch)
    expected = _brute_force_mean(segmenter.network.predict, batch, [0, 1])
    np.testing.assert_allclose(got, expected, atol=2e-6)


def test_shifted_windows_with_flip_average_like_one_window_with_flip(tiny_model):
    """With flip, the flipped copies are averaged in as the flipped window is: for one window the same result."""
    batch = np.random.default_rng(2).random((1, 20, 70, 18, 1)).astype(np.float32)
    results = {}
    for shifts in (1, 2):
        settings = InferenceSettings(device="cpu", precision="float32", flip=True, shifts=shifts, smoothing_sigma=0.0,
                                     postprocess="none")
        results[shifts] = _window_posteriors(Segmenter(tiny_model, settings), batch)
    np.testing.assert_allclose(results[2].sum(axis=-1), 1.0, atol=1e-5)
    # the first plane along x, y and z is covered by the unshifted copy alone: equal to the single window there
    np.testing.assert_allclose(results[2][:, :1], results[1][:, :1], atol=2e-6)
    assert np.abs(results[2] - results[1]).max() > 1e-4


def test_shifts_change_nothing_for_a_network_without_a_pooling_grid():
    """A per-voxel network is shift-equivariant: every shifted copy gives the same labels."""
    image, _ = phantom((40, 40, 40), seed=3)
    scan = Image(image, np.eye(4))
    one = Segmenter(voxel_network(), InferenceSettings(shifts=1)).segment(scan)
    three = Segmenter(voxel_network(), InferenceSettings(shifts=3)).segment(scan)
    np.testing.assert_array_equal(three.labels.data, one.labels.data)


def test_shifts_above_the_size_multiple_are_refused():
    segmenter = Segmenter(_blocky_network(multiple=2), InferenceSettings(flip=False, shifts=3))
    with pytest.raises(ValueError, match=r"shifts \(3\) cannot exceed the network's size multiple \(2\)"):
        segmenter.predict_window(np.zeros((1, 4, 4, 4, 1), np.float32))


def test_fast_mode_has_no_test_time_augmentation():
    fast = InferenceSettings.fast()
    assert (fast.flip, fast.shifts, fast.postprocess) == (False, 1, "brain")


@pytest.mark.parametrize(
    ("flags", "requested", "expected"),
    [
        ({"avx512_bf16", "avx512f"}, "auto", "bfloat16"),
        ({"amx_bf16"}, "auto", "bfloat16"),
        ({"avx512f", "avx2"}, "auto", "float32"),
        ({"avx512_bf16"}, "float32", "float32"),
        ({"avx512_bf16"}, "bfloat16", "bfloat16"),
    ],
)
def test_auto_precision_follows_the_cpu_flags(monkeypatch, flags, requested, expected):
    monkeypatch.setattr(precision_module, "_cpu_flags", lambda: frozenset(flags))
    assert resolve_precision(requested, "cpu") == expected


def test_bfloat16_without_native_support_is_refused_with_one_line(monkeypatch):
    monkeypatch.setattr(precision_module, "_cpu_flags", lambda: frozenset({"avx2"}))
    with pytest.raises(DeviceError) as err:
        resolve_precision("bfloat16", "cpu")
    message = str(err.value)
    assert "\n" not in message and "avx512_bf16" in message and "use --precision float32 or auto" in message


@pytest.mark.parametrize(("capabilities", "native"), [([(8, 0)], True), ([(9, 0), (8, 6)], True),
                                                      ([(7, 5)], False), ([(8, 0), (7, 0)], False)])
def test_gpu_bfloat16_needs_compute_capability_8(monkeypatch, capabilities, native):
    monkeypatch.setattr(precision_module, "_gpu_capabilities", lambda: capabilities)
    assert bfloat16_support("gpu")[0] is native
    assert resolve_precision("auto", "gpu") == ("bfloat16" if native else "float32")


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    assert precision_module._cpu_flags(cpuinfo) == frozenset({"fpu", "avx512f", "avx512_bf16"})
    assert precision_module._cpu_flags(tmp_path / "missing") == frozenset()


def _needs_native_bfloat16():
    if not bfloat16_support("cpu")[0]:
        pytest.skip("this CPU has no native bfloat16 arithmetic (avx512_bf16 / amx_bf16)")


def test_bfloat16_runs_the_model_in_bfloat16_with_float32_posteriors(tiny_model, tmp_path):
    _needs_native_bfloat16()
    image, _ = phantom((32, 32, 32), seed=1)
    scan = Image(image, np.eye(4))
    runs = {}
    for name in ("float32", "bfloat16"):
        segmenter = Segmenter(tiny_model, InferenceSettings(device="cpu", precision=name, shifts=1))
        assert segmenter.network.precision == name
        runs[name] = segmenter.segment(scan, posteriors=True)
    assert runs["bfloat16"].posteriors.dtype == np.float32
    # bfloat16 keeps 8 bits of mantissa: posteriors agree to a few hundredths, not to float32's 1e-6
    difference = np.abs(runs["bfloat16"].posteriors - runs["float32"].posteriors)
    assert 1e-5 < difference.max() < 0.05


def test_model_file_loads_with_the_mixed_bfloat16_policy(tiny_model):
    _needs_native_bfloat16()
    network = Network.from_file(tiny_model, device="cpu", precision="auto")
    assert network.precision == "bfloat16"
    from synthseg_bids.network import load_model

    model, _ = load_model(tiny_model, dtype_policy="mixed_bfloat16")
    assert {layer.compute_dtype for layer in model.layers if layer.weights} == {"bfloat16"}


def test_segment_refuses_bfloat16_without_native_support_and_writes_nothing(monkeypatch, tiny_model, tmp_path,
                                                                            capsys):
    from synthseg_bids.cli.segment import main

    image, _ = phantom((24, 24, 24))
    scan = tmp_path / "scan.nii.gz"
    from synthseg_bids.core.io import save_image

    save_image(image, np.eye(4), scan)
    monkeypatch.setattr(precision_module, "_cpu_flags", lambda: frozenset({"avx2"}))
    out = tmp_path / "out"
    status = main(["--i", str(scan), "--o", str(out / "seg.nii.gz"), "--model", str(tiny_model), "--cpu",
                   "--precision", "bfloat16"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status != 0
    assert len(err) == 1 and "precision bfloat16 needs native bfloat16 arithmetic" in err[0], err
    assert not out.exists() or not any(out.iterdir())
    assert load_image(scan).shape == (24, 24, 24)
