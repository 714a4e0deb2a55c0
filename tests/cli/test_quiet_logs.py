"""TensorFlow/absl start-up noise stays out of stderr by default, also from worker processes.

The reference is TensorFlow itself: imported in a bare subprocess on this machine, it
prints the absl lines (``I0000 ... oneDNN``, ``Could not find cuda drivers``,
``E0000 ... failed call to cuInit``); the same subprocess through
``synthseg-bids segment`` must not.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap

import nibabel as nib
import numpy as np
import pytest

from synthseg_bids.cli.quiet_logs import is_noise, verbosity_from_argv

from helpers import make_toy_label_map, toy_affine

ABSL = re.compile(r"^[IWE]\d{4} |absl::InitializeLog|oneDNN custom operations|Could not find cuda drivers",
                  re.MULTILINE)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # conftest sets it for the test process; users do not
    return env


def test_segment_on_the_cpu_prints_no_tensorflow_noise(tmp_path, tiny_model):
    reference = subprocess.run(
        [sys.executable, "-c", "import tensorflow as tf; tf.config.list_physical_devices('GPU')"],
        capture_output=True, text=True, env=_env(), check=True)
    if not ABSL.search(reference.stderr):
        pytest.skip("this TensorFlow build prints no absl start-up lines here: nothing to silence")
    scan = tmp_path / "scan.nii.gz"
    labels = make_toy_label_map()
    nib.save(nib.Nifti1Image((labels > 0) * 50.0 + labels.astype(np.float32), toy_affine()), scan)
    proc = subprocess.run(
        [sys.executable, "-m", "synthseg_bids.cli.main", "segment", "--i", str(scan), "--o",
         str(tmp_path / "seg.nii.gz"), "--model", str(tiny_model), "--cpu", "--fast"],
        capture_output=True, text=True, env=_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "seg.nii.gz").is_file()
    assert ABSL.findall(proc.stderr) == [], proc.stderr
    assert "E0000" not in proc.stderr and "cuInit" not in proc.stderr
    assert "scan.nii.gz" in proc.stderr  # the command's own progress line still shows


_CHILD_WRITES = textwrap.dedent(
    r"""
    import multiprocessing, os, sys
    from synthseg_bids.cli.quiet_logs import quiet_native_logs

    NOISE = (b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
             b"I0000 00:00:1796116022.272670   12944 port.cc:153] oneDNN custom operations are on.\n"
             b"E0000 00:00:1796116029.357172   12944 cuda_platform.cc:52] failed call to cuInit: INTERNAL\n")

    def worker(tag):
        os.write(2, NOISE + f"worker {tag} says hello\n".encode())

    if __name__ == "__main__":
        with quiet_native_logs(int(sys.argv[1])):
            os.write(2, NOISE)
            print("main: a real error line", file=sys.stderr)
            os.write(2, b"E0000 00:00:1.0   1 gpu.cc:7] out of memory on the device\n")
            for method in ("fork", "spawn"):
                process = multiprocessing.get_context(method).Process(target=worker, args=(method,))
                process.start()
                process.join()
            os.write(2, b"no newline at the end")
        print("after the block", file=sys.stderr)
    """
)


@pytest.mark.parametrize("verbosity", [0, 2])
def test_filter_covers_worker_processes_and_shows_everything_with_vv(tmp_path, verbosity):
    script = tmp_path / "child.py"
    script.write_text(_CHILD_WRITES)
    proc = subprocess.run([sys.executable, str(script), str(verbosity)], capture_output=True, text=True,
                          timeout=120, check=True)
    lines = proc.stderr.splitlines()
    kept = ["main: a real error line", "E0000 00:00:1.0   1 gpu.cc:7] out of memory on the device",
            "worker fork says hello", "worker spawn says hello", "no newline at the endafter the block"]
    if verbosity == 0:
        assert lines == kept
    else:
        assert len([ln for ln in lines if "oneDNN" in ln]) == 3 and len([ln for ln in lines if "cuInit" in ln]) == 3
        assert [ln for ln in lines if ln in kept] == kept


def test_noise_classifier_and_verbosity():
    assert is_noise(b"I0000 00:00:1796116022.273148   12944 cudart_stub.cc:31] Could not find cuda drivers")
    assert is_noise(b"W0000 00:00:17.2   1 cpu_feature_guard.cc:1] The TensorFlow binary is optimized")
    assert not is_noise(b"E0000 00:00:17.2   1 bfc_allocator.cc:1] Allocator ran out of memory")
    assert not is_noise(b"I0000 is a fine scan name")
    assert not is_noise(b"09:11:22 | INFO    | 4 scan(s) selected")
    assert verbosity_from_argv(["a", "b", "participant", "-vv"]) == 2
    assert verbosity_from_argv(["-v", "--verbose", "--", "-vvv"]) == 2
    assert verbosity_from_argv(["--version"]) == 0
