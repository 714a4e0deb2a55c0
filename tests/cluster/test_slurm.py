"""The participant level on a real SLURM cluster (Nipype's SLURM plugin), compared with MultiProc.

A single-node cluster (``slurmctld`` + ``slurmd`` + ``munged`` from the distribution's
packages, see :mod:`slurm_cluster`) is started by the module fixture and stopped after it.
The BIDS-App runs once with ``--use-plugin`` (``plugin: SLURM``) and once with MultiProc
on the same dataset: four subjects (six scans) of which one scan is a truncated file.
Both runs must fail that scan alone with the same one-line error, and write the same
label maps and volumes for the others; every SLURM job Nipype submitted must have
completed on the cluster. The array job script of the README
(``singularity/slurm_array_job.sh``) runs on the same cluster, one participant per task.

Needs Debian's ``slurm-wlm`` and ``munge`` (``.ci/run`` installs them when it runs as root)
and root (the test cluster's daemons run jobs as the current user, which is the setup
tested here); skipped with the reason otherwise.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from helpers import make_app_data
from slurm_cluster import SlurmCluster, missing_programs

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow

BROKEN = "sub-04/anat/sub-04_T1w.nii.gz"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    missing = missing_programs()
    if missing:
        pytest.skip(f"SLURM not installed ({', '.join(missing)} missing): apt-get install slurm-wlm munge")
    if os.geteuid() != 0:
        pytest.skip("the test SLURM cluster runs its daemons as root; run the tests as root (as CI does)")
    with SlurmCluster(tmp_path_factory.mktemp("slurm")) as running:
        yield running


@pytest.fixture(scope="module")
def data(tmp_path_factory, tiny_model):
    data = make_app_data(tmp_path_factory.mktemp("cluster"), tiny_model, shape=(32, 32, 32), n_subjects=4)
    broken = data["bids"] / BROKEN
    broken.write_bytes(broken.read_bytes()[:300])  # truncated gzip stream
    data["plugin"] = data["root"] / "slurm.yml"
    data["plugin"].write_text('plugin: SLURM\nplugin_args:\n  sbatch_args: "--cpus-per-task=1"\n')
    return data


def _run(cluster, data, name, *args):
    """The BIDS-App as a user runs it (a subprocess), with the cluster's SLURM_CONF and no $LOGNAME."""
    out, work = data["root"] / name, data["root"] / f"work_{name}"
    cmd = [sys.executable, "-m", "synthseg_bids.cli.main", str(data["bids"]), str(out), "participant",
           "--model", str(data["model"]), "--skip-bids-validation", "--inference-settings", str(data["fast"]),
           "-w", str(work), *args]
    env = dict(cluster.env, NIPYPE_NO_ET="1", TF_CPP_MIN_LOG_LEVEL="3")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env.pop("LOGNAME", None)  # the app must cope: Nipype names SLURM jobs after it
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    return {"rc": proc.returncode, "stderr": proc.stderr, "out": out, "work": work,
            "seconds": time.perf_counter() - start}


@pytest.fixture(scope="module")
def runs(cluster, data):
    slurm = _run(cluster, data, "out_slurm", "--use-plugin", str(data["plugin"]))
    jobs = cluster.jobs()
    multiproc = _run(cluster, data, "out_multiproc", "--nprocs", "2")
    print(f"\nparticipant level, 6 scans (1 broken): SLURM {slurm['seconds']:.1f} s ({len(jobs)} jobs), "
          f"MultiProc(2) {multiproc['seconds']:.1f} s")
    return {"slurm": slurm, "multiproc": multiproc, "jobs": jobs}


def _dsegs(out: Path) -> dict[str, Path]:
    return {str(p.relative_to(out)): p for p in sorted(out.rglob("*_dseg.nii.gz"))}


def test_slurm_run_fails_only_the_broken_scan(runs):
    slurm = runs["slurm"]
    assert slurm["rc"] == 1
    errors = [ln for ln in slurm["stderr"].splitlines() if ln.startswith("synthseg-bids: error:")]
    assert len(errors) == 1 and errors[0].startswith(f"synthseg-bids: error: {BROKEN}:"), errors
    assert "crash file" in errors[0]
    assert len(_dsegs(slurm["out"])) == 5


def test_every_nipype_job_ran_on_the_cluster(runs):
    jobs = runs["jobs"]
    scripts = sorted(runs["slurm"]["work"].rglob("batchscript_*.sh"))
    assert scripts, "Nipype wrote no batch script: the SLURM plugin was not used"
    # one job per submitted node (segment and figure per scan; the broken scan stops after segment)
    assert len(jobs) == len(scripts) == 2 * 5 + 1, [j["JobName"] for j in jobs]
    states = {j["JobId"]: (j["JobState"], j["ExitCode"]) for j in jobs}
    assert set(states.values()) == {("COMPLETED", "0:0")}, states  # node failures are Nipype's, not SLURM's
    names = [j["JobName"] for j in jobs]
    assert sum(n.startswith("segment.") for n in names) == 6 and sum(n.startswith("figure.") for n in names) == 5
    user = pwd.getpwuid(os.getuid()).pw_name
    assert all(n.endswith(f".{user}") for n in names), names  # Nipype appends $LOGNAME, set by the app
    assert all(j["BatchHost"] == "localhost" for j in jobs)


def test_slurm_and_multiproc_give_the_same_outputs(runs):
    slurm, multiproc = runs["slurm"], runs["multiproc"]
    assert multiproc["rc"] == 1
    a, b = _dsegs(slurm["out"]), _dsegs(multiproc["out"])
    assert a.keys() == b.keys() and len(a) == 5
    for name in a:
        img_a, img_b = nib.load(a[name]), nib.load(b[name])
        np.testing.assert_array_equal(np.asanyarray(img_a.dataobj), np.asanyarray(img_b.dataobj), err_msg=name)
        np.testing.assert_array_equal(img_a.affine, img_b.affine)
        tsv = name.replace("_dseg.nii.gz", "_volumes.tsv")
        pd.testing.assert_frame_equal(pd.read_csv(slurm["out"] / tsv, sep="\t"),
                                      pd.read_csv(multiproc["out"] / tsv, sep="\t"))


def test_rerun_on_slurm_skips_finished_scans(cluster, data, runs):
    """A second SLURM run redoes only the failed scan (which fails again): no job for the others."""
    before = {p: p.stat().st_mtime_ns for p in _dsegs(runs["slurm"]["out"]).values()}
    n_jobs = len(runs["jobs"])
    shutil.rmtree(runs["slurm"]["work"])
    again = _run(cluster, data, "out_slurm", "--use-plugin", str(data["plugin"]))
    assert again["rc"] == 1
    assert {p: p.stat().st_mtime_ns for p in _dsegs(runs["slurm"]["out"]).values()} == before
    new_jobs = [j["JobName"] for j in cluster.jobs()][n_jobs:]
    assert len(new_jobs) == 1 and new_jobs[0].startswith("segment."), new_jobs


def test_array_job_script_runs_one_participant_per_task(cluster, data, tmp_path):
    """The README's job script (``singularity/slurm_array_job.sh``, without Apptainer) as an array of 4 tasks."""
    out, work = tmp_path / "out", tmp_path / "work"
    env = dict(cluster.env, NIPYPE_NO_ET="1", TF_CPP_MIN_LOG_LEVEL="3")
    env["PATH"] = os.pathsep.join([sysconfig.get_path("scripts"), env["PATH"]])
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    if shutil.which("synthseg-bids", path=env["PATH"]) is None:
        pytest.skip("the synthseg-bids console script is not installed (pip install -e .)")
    env.pop("SYNTHSEG_SIF", None)
    n_jobs = len(cluster.jobs())
    # the node has fewer CPUs than the script asks for: override on the command line, as users do
    cmd = [shutil.which("sbatch", path=env["PATH"]), "--wait", "--array=1-4", "--cpus-per-task=1",
           f"--output={tmp_path}/task_%a.log", str(ROOT / "singularity" / "slurm_array_job.sh"),
           str(data["bids"]), str(out), str(work), "--model", str(data["model"]), "--skip-bids-validation",
           "--inference-settings", str(data["fast"])]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert proc.returncode != 0  # sub-04's scan is broken: sbatch --wait reports the failed task
    tasks = {j["JobId"]: j for j in cluster.jobs()[n_jobs:]}
    states = {j["ArrayTaskId"]: (j["JobState"], j["ExitCode"]) for j in tasks.values()}
    assert states == {"1": ("COMPLETED", "0:0"), "2": ("COMPLETED", "0:0"), "3": ("COMPLETED", "0:0"),
                      "4": ("FAILED", "1:0")}, states
    assert len(_dsegs(out)) == 5 and all(not k.startswith("sub-04") for k in _dsegs(out))
    log4 = (tmp_path / "task_4.log").read_text()
    assert f"synthseg-bids: error: {BROKEN}:" in log4
    assert "task 1: sub-01" in (tmp_path / "task_1.log").read_text()
    assert sorted(p.name.split("_")[1] for p in work.iterdir()) == ["1", "2", "3", "4"]  # a work folder per task
    description = json.loads((out / "dataset_description.json").read_text())  # written by 4 tasks at once
    assert description["DatasetType"] == "derivative"
