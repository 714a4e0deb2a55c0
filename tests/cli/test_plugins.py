"""The scan-by-scan local plugins: each scan's later steps come before the next scan's first step."""

from __future__ import annotations

import networkx as nx
import pytest
from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from synthseg_bids.cli.plugins import ScanFirstLinearPlugin, ScanFirstMultiProcPlugin, scan_first


def _add_one(x):
    if x < 0:
        raise ValueError(f"negative input {x}")
    return x + 1


def _workflow(tmp_path, inputs=(1, 2, 3)):
    """Per 'scan' i: step_a -> step_b; a join node after every scan."""
    wf = pe.Workflow(name="wf", base_dir=str(tmp_path))
    wf.config["execution"]["crashdump_dir"] = str(tmp_path / "crashes")
    join = pe.Node(niu.Merge(len(inputs)), name="join")
    for i, value in enumerate(inputs, start=1):
        scan = pe.Workflow(name=f"scan{i}")
        a = pe.Node(niu.Function(function=_add_one, input_names=["x"], output_names=["y"]), name="step_a")
        b = pe.Node(niu.Function(function=_add_one, input_names=["x"], output_names=["y"]), name="step_b")
        a.inputs.x = value
        scan.connect(a, "y", b, "x")
        wf.connect(scan, "step_b.y", join, f"in{i}")
    return wf


def _group(node):
    return next((p for p in (node._hierarchy or "").split(".") if p.startswith("scan")), None)


def _run(tmp_path, plugin, inputs=(1, 2, 3)):
    events = []
    callback = lambda node, status: events.append((status, _group(node), node.name))  # noqa: E731
    args = {"status_callback": callback, "n_procs": 1}
    runner = plugin if isinstance(plugin, str) else plugin(args, group_of=_group)
    try:
        _workflow(tmp_path, inputs).run(plugin=runner, plugin_args=args)
    except RuntimeError:
        pass
    return [(group, name) for status, group, name in events if status == "end"], events


@pytest.mark.parametrize(("ours", "nipypes"), [(ScanFirstLinearPlugin, "Linear"),
                                               (ScanFirstMultiProcPlugin, "MultiProc")])
def test_each_scan_finishes_before_the_next_scan_starts(tmp_path, ours, nipypes):
    scan_by_scan = [("scan1", "step_a"), ("scan1", "step_b"), ("scan2", "step_a"), ("scan2", "step_b"),
                    ("scan3", "step_a"), ("scan3", "step_b"), (None, "join")]
    assert _run(tmp_path / "ours", ours)[0] == scan_by_scan
    # the reference: Nipype's own plugin runs every scan's first step first
    theirs = _run(tmp_path / "nipype", nipypes)[0]
    assert theirs[:3] == [("scan1", "step_a"), ("scan2", "step_a"), ("scan3", "step_a")]


def test_a_failure_stops_only_its_dependents(tmp_path):
    ended, events = _run(tmp_path, ScanFirstLinearPlugin, inputs=(1, -5, 3))
    assert ("exception", "scan2", "step_a") in events
    assert ended == [("scan1", "step_a"), ("scan1", "step_b"), ("scan3", "step_a"), ("scan3", "step_b")]
    assert len(list((tmp_path / "crashes").glob("crash-*"))) == 1


def test_scan_first_refuses_an_order_that_breaks_a_dependency():
    graph = nx.DiGraph([("x_other", "a_scan")])  # a node of no scan feeding a scan: cannot go last
    with pytest.raises(RuntimeError, match="breaks the dependency"):
        scan_first(["x_other", "a_scan"], lambda n: "s" if n.endswith("scan") else None, graph)


@pytest.mark.parametrize("plugin", [ScanFirstLinearPlugin, ScanFirstMultiProcPlugin])
def test_scans_run_in_the_given_order(tmp_path, plugin):
    """The participant workflow's look-ahead relies on the plugin following the scan order it was given."""
    events = []
    callback = lambda node, status: events.append((status, _group(node), node.name))  # noqa: E731
    args = {"status_callback": callback, "n_procs": 1}
    _workflow(tmp_path).run(plugin=plugin(args, group_of=_group, order=["scan3", "scan1", "scan2"]), plugin_args=args)
    ended = [(group, name) for status, group, name in events if status == "end"]
    assert ended == [("scan3", "step_a"), ("scan3", "step_b"), ("scan1", "step_a"), ("scan1", "step_b"),
                     ("scan2", "step_a"), ("scan2", "step_b"), (None, "join")]
