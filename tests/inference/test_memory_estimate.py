"""The segmentation node's memory hint: an estimate from the scan's header, checked against measured peaks."""

from __future__ import annotations

import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from synthseg_bids.inference import memory
from synthseg_bids.workflows.base import init_participant_wf
from synthseg_bids.workflows.config import AppConfig

#: How far above a measured peak the estimate may be (it bounds heads up to the largest training head).
MARGIN = 1.6


def _header_only(path, shape, voxel):
    """A NIfTI file of ``shape`` voxels of ``voxel`` mm (uint8 zeros: small on disk)."""
    nib.save(nib.Nifti1Image(np.zeros(shape, np.uint8), np.diag([voxel, voxel, voxel, 1.0])), path)
    return str(path)


def test_estimate_grows_with_the_grid_and_the_posteriors():
    eye = np.eye(4)
    small = memory.segmentation_memory_bytes((128, 128, 128), eye, 33)
    typical = memory.segmentation_memory_bytes((256, 256, 256), eye, 33)
    fine = memory.segmentation_memory_bytes((512, 512, 512), np.diag([0.5, 0.5, 0.5, 1.0]), 33)
    assert small < typical < fine
    # posteriors on the input grid: 33 float32 channels per input voxel at least
    with_post = memory.segmentation_memory_bytes((512, 512, 512), np.diag([0.5, 0.5, 0.5, 1.0]), 33, posteriors=True)
    assert with_post - fine >= memory.posteriors_bytes((512, 512, 512), 33)
    # a crop bounds the network window
    assert memory.segmentation_memory_bytes((256, 256, 256), eye, 33, crop=(96, 96, 96)) < typical


def test_network_window_bound_closed_form():
    # field of view 200 x 200 x 150 mm, capped by the largest head (176 x 240 x 256 mm), multiples of 16
    assert memory.network_window_voxels((100, 200, 50), np.diag([2.0, 1.0, 3.0, 1.0])) == 176 * 208 * 160
    # voxel axes permuted (an LIA-like scan): the world axes' extents count, not the voxel axes'
    permuted = np.array([[0, 0, -1, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]], float)
    assert memory.network_window_voxels((300, 150, 120), permuted) == 128 * 160 * 256
    # a crop is the window, rounded up to the size multiple
    assert memory.network_window_voxels((256, 256, 256), np.eye(4), crop=(100, 96, 90)) == 112 * 96 * 96


def test_head_box_is_the_largest_training_head(shared_data):
    """HEAD_BOX_MM: the RAS extent of the non-zero labels of the 15 whole-head maps, rounded up to 16 mm."""
    from synthseg_bids.generator.spec import reorient_to_ras

    largest = np.zeros(3)
    for path in sorted((shared_data / "training_label_maps").glob("*.nii.gz")):
        image = nib.load(path)
        data, affine = reorient_to_ras(np.asarray(image.dataobj), image.affine)
        for axis in range(3):
            present = np.flatnonzero(np.any(data > 0, axis=tuple(a for a in range(3) if a != axis)))
            extent = (present[-1] - present[0] + 1) * abs(affine[axis, axis])
            largest[axis] = max(largest[axis], extent)
    np.testing.assert_array_equal(np.ceil(largest / 16) * 16, memory.HEAD_BOX_MM)


def test_header_of_a_missing_or_broken_file_gives_the_typical_estimate(tmp_path):
    typical = memory.segmentation_mem_gb(None)
    assert memory.segmentation_mem_gb(tmp_path / "missing.nii.gz") == typical
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"\x1f\x8b not a NIfTI")
    assert memory.segmentation_mem_gb(broken) == typical
    assert typical == memory.segmentation_memory_bytes((256, 256, 256), np.eye(4), 33) / 2**30


def test_participant_workflow_sets_each_scans_estimate(tmp_path):
    """MultiProc reads ``mem_gb`` of each node: it must be the scan's own estimate, posteriors included."""
    small = _header_only(tmp_path / "sub-01_T1w.nii.gz", (96, 96, 96), 1.0)
    large = _header_only(tmp_path / "sub-02_T1w.nii.gz", (384, 384, 320), 0.6)
    for posteriors in (False, True):
        config = AppConfig(bids_dir=tmp_path, output_dir=tmp_path / "out", work_dir=tmp_path / "work",
                           write_posteriors=posteriors)
        wf = init_participant_wf(config=config, subjects={"01": [small], "02": [large]})
        hints = {}
        for name in wf.list_node_names():
            if name.endswith("segmentation_wf.segment"):
                hints["01" if "sub_01" in name else "02"] = wf.get_node(name).mem_gb
        assert hints == {
            "01": pytest.approx(memory.segmentation_mem_gb(small, posteriors=posteriors)),
            "02": pytest.approx(memory.segmentation_mem_gb(large, posteriors=posteriors)),
        }
        assert hints["01"] < hints["02"]


WORKER = r"""
import json, os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import nipype  # the node runs in a Nipype worker
from synthseg_bids.inference import InferenceSettings, Segmenter, write_result
scan, out, posteriors, precision = sys.argv[1], sys.argv[2], sys.argv[3] == "1", sys.argv[4]
settings = InferenceSettings(device="cpu", threads=2, precision=precision)
result = Segmenter(None, settings).segment(scan, posteriors=posteriors)
write_result(result, labels=os.path.join(out, "dseg.nii.gz"), volumes=os.path.join(out, "volumes.csv"),
             posteriors=os.path.join(out, "probseg.nii.gz") if posteriors else None)
# VmHWM: this process's own peak; ru_maxrss would keep the forking pytest process's, which survives exec
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps(peak * 1024))
"""


def _mni_on_grid(path, voxel):
    from nilearn import datasets

    from synthseg_bids.core.resample import resample_to_grid

    t1 = datasets.load_mni152_template(resolution=1)
    data = np.asarray(t1.get_fdata(), np.float32)
    if voxel == 1.0:
        nib.save(nib.Nifti1Image(data, t1.affine), path)
        return data.shape, t1.affine
    shape = tuple(int(round(s / voxel)) for s in data.shape)
    affine = t1.affine @ np.diag([voxel, voxel, voxel, 1.0])
    nib.save(nib.Nifti1Image(resample_to_grid(data, t1.affine, shape, affine, order=1), affine), path)
    return shape, affine


@pytest.mark.slow
@pytest.mark.parametrize("voxel, posteriors, precision", [(1.0, False, "float32"), (0.8, True, "float32"),
                                                          (1.0, False, "auto")],
                         ids=["1mm", "0.8mm-posteriors", "1mm-auto-precision"])
def test_estimate_bounds_the_measured_peak(tmp_path, voxel, posteriors, precision):
    """Peak RSS of the segmentation step in a fresh process (what one MultiProc slot needs).

    The child reports its own peak (``VmHWM`` of ``/proc/self/status``): its ``ru_maxrss`` would
    start from the forking pytest process's (kept across exec), and this process's ``RUSAGE_CHILDREN``
    would be the largest of all children any earlier test started.
    """
    pytest.importorskip("nilearn")
    from synthseg_bids.inference import default_model_path

    if not default_model_path().is_file():
        pytest.skip("the shipped model is not installed")
    shape, affine = _mni_on_grid(tmp_path / "scan.nii.gz", voxel)
    done = subprocess.run([sys.executable, "-c", WORKER, str(tmp_path / "scan.nii.gz"), str(tmp_path),
                           "1" if posteriors else "0", precision], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    estimate = memory.segmentation_memory_bytes(shape, affine, 33, posteriors=posteriors)
    assert measured <= estimate, (measured / 2**30, estimate / 2**30)
    if precision == "float32":  # the estimate is fitted to float32, the larger peak; bfloat16's is bounded by it
        assert estimate <= MARGIN * measured, (measured / 2**30, estimate / 2**30)
