"""Segmenting the next scan in the background (``Segmenter.segment_ahead``): taken, dropped, errors."""

import logging
import os
import threading

import numpy as np
import pytest

from synthseg_bids.core.io import ImageError, save_image
from synthseg_bids.inference import InferenceSettings, Segmenter
from synthseg_bids.inference.runtime import Network

from inference_fakes import phantom, voxel_network

SETTINGS = InferenceSettings(flip=False, shifts=1, min_size=8)  # one network call per scan
WAIT = 60  # seconds: a generous bound on waiting for the other thread, never a timing assertion


def _scans(tmp_path, n=2):
    paths = []
    for seed in range(n):
        image, _ = phantom((24, 24, 24), seed=seed)
        paths.append(save_image(image, np.eye(4), tmp_path / f"sub-{seed:02d}_T1w.nii.gz"))
    return paths


def _counting(calls: list, gate: threading.Event | None = None, entered: threading.Event | None = None) -> Network:
    """The voxel network, recording the thread of each call; with ``gate``, each call waits for it."""
    good = voxel_network()

    def predict(batch):
        calls.append(threading.current_thread().name)
        if entered is not None:
            entered.set()
        if gate is not None and not gate.wait(WAIT):
            raise TimeoutError("the test never opened the gate")
        return good.predict(batch)

    return Network(predict=predict, label_table=good.label_table, resolution_mm=1.0, size_multiple=8)


def test_the_next_scan_runs_in_the_background_and_is_taken(tmp_path):
    a, b = _scans(tmp_path)
    reference = Segmenter(voxel_network(), SETTINGS).segment(b)
    calls, gate, entered = [], threading.Event(), threading.Event()
    segmenter = Segmenter(_counting(calls, gate, entered), SETTINGS)
    assert segmenter.segment_ahead(b)
    # the network is running b in another thread while this one is free (the gate is shut)
    assert entered.wait(WAIT)
    assert calls == [calls[0]] and calls[0].startswith("synthseg-ahead")
    gate.set()
    result = segmenter.segment(b)
    assert len(calls) == 1  # taken, not segmented again
    np.testing.assert_array_equal(result.labels.data, reference.labels.data)
    assert result.volumes == pytest.approx(reference.volumes)
    segmenter.segment(b)
    assert len(calls) == 2  # taken once only


def test_a_scan_ahead_that_is_not_asked_for_is_dropped(tmp_path, caplog):
    a, b = _scans(tmp_path)
    calls = []
    segmenter = Segmenter(_counting(calls), SETTINGS)
    segmenter.segment_ahead(a)
    with caplog.at_level(logging.INFO, logger="synthseg_bids.inference.look_ahead"):
        result = segmenter.segment(b)
    assert len(calls) == 2  # a (dropped) and b, one after the other
    assert f"{os.path.realpath(a)} was segmented ahead, but {b} was asked for next" in caplog.text
    np.testing.assert_array_equal(result.labels.data, Segmenter(voxel_network(), SETTINGS).segment(b).labels.data)


def test_other_options_or_a_changed_file_are_segmented_again(tmp_path):
    a, b = _scans(tmp_path)
    calls = []
    segmenter = Segmenter(_counting(calls), SETTINGS)
    segmenter.segment_ahead(a)
    assert segmenter.segment(a, posteriors=True).posteriors is not None  # asked with posteriors: not the one ahead
    assert len(calls) == 2

    segmenter.segment_ahead(a)
    other, _ = phantom((24, 24, 24), seed=5)
    save_image(other, np.eye(4), a)  # the file changes after the look-ahead started
    stat = os.stat(a)
    os.utime(a, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    result = segmenter.segment(a)
    assert len(calls) == 4
    expected = Segmenter(voxel_network(), SETTINGS).segment(a)
    np.testing.assert_array_equal(result.labels.data, expected.labels.data)


def test_an_error_ahead_is_raised_by_the_call_that_takes_it(tmp_path):
    bad = save_image(np.zeros((16, 16, 16), np.float32), np.eye(4), tmp_path / "sub-bad_T1w.nii.gz")
    segmenter = Segmenter(voxel_network(), SETTINGS)
    assert segmenter.segment_ahead(bad)  # no error here: this call belongs to the scan before
    with pytest.raises(ImageError, match="no intensity contrast") as err:
        segmenter.segment(bad)
    assert str(bad) in str(err.value)
    assert not segmenter.segment_ahead(tmp_path / "missing_T1w.nii.gz")  # nothing to start
    with pytest.raises(ImageError, match="missing_T1w"):
        segmenter.segment(tmp_path / "missing_T1w.nii.gz")


def test_the_resampled_scan_is_an_option_of_the_scan_ahead(tmp_path):
    from synthseg_bids.core.io import load_image
    from synthseg_bids.inference import prepare_scan

    a, _ = _scans(tmp_path)
    calls = []
    segmenter = Segmenter(_counting(calls), SETTINGS)
    segmenter.segment_ahead(a, resampled=True)
    assert segmenter.segment(a).resampled is None and len(calls) == 2  # asked without it: segmented again
    segmenter.segment_ahead(a, resampled=True)
    result = segmenter.segment(a, resampled=True)
    assert len(calls) == 3  # taken
    prepared = prepare_scan(load_image(a), 1.0, 8, SETTINGS)
    np.testing.assert_array_equal(result.resampled.data, prepared.conformed)
    np.testing.assert_array_equal(result.resampled.affine, prepared.conformed_affine)
