"""Nipype's local plugins, finishing one scan before moving to the next one's later steps.

Nipype runs nodes in ``networkx.topological_sort`` order, generation by generation: with
Linear, and with MultiProc whenever the segmentations fill every slot, every scan is
segmented before any scan's figure and derivatives are written, so nothing is finished
(and no progress can be told) until the very end, and a killed run leaves no finished
scan. These plugins only change that order: the nodes of each scan come together, scans
in Nipype's order, then the nodes of no scan (the subjects' reports). It is still a
topological order, as no edge leaves a scan except into the reports. Everything else is
Nipype's: failures stop only their dependent nodes, status callbacks, crash files.
"""

from __future__ import annotations

import os
from typing import Callable, Hashable, Sequence

from nipype.pipeline.engine.utils import topological_sort
from nipype.pipeline.plugins import LinearPlugin, MultiProcPlugin
from nipype.pipeline.plugins.tools import report_crash

__all__ = ["ScanFirstLinearPlugin", "ScanFirstMultiProcPlugin", "scan_first"]

#: Node -> its scan (any hashable), or ``None`` for nodes of no scan.
GroupOf = Callable[[object], Hashable | None]


def scan_first(nodes: Sequence, group_of: GroupOf, graph=None, order: Sequence[Hashable] = ()) -> list:
    """``nodes`` (a topological order) regrouped: each scan's nodes together, nodes of no scan last.

    Scans come in ``order`` (then any other scan, in Nipype's order). With ``graph``, checks
    that the result is still a topological order (``RuntimeError`` if not).
    """
    first: dict = {group: position - len(order) for position, group in enumerate(order)}
    for position, node in enumerate(nodes):
        group = group_of(node)
        if group is not None:
            first.setdefault(group, position)
    rank = {node: (first.get(group_of(node), len(nodes)), position) for position, node in enumerate(nodes)}
    order = sorted(nodes, key=rank.__getitem__)
    if graph is not None:
        where = {node: i for i, node in enumerate(order)}
        bad = [(u, v) for u, v in graph.edges() if where[u] > where[v]]
        if bad:
            raise RuntimeError(f"scan-first order breaks the dependency {bad[0][0]} -> {bad[0][1]}")
    return order


class ScanFirstMultiProcPlugin(MultiProcPlugin):
    """Nipype's MultiProc with the jobs numbered scan by scan (see the module docstring).

    MultiProc submits the ready jobs in job-number order, so once a scan's segmentation
    is done its figure and derivatives go before the next scan's segmentation.
    """

    def __init__(self, plugin_args: dict | None = None, *, group_of: GroupOf, order: Sequence[Hashable] = ()):
        super().__init__(plugin_args=plugin_args)
        self._group_of = group_of
        self._order = tuple(order)

    def _generate_dependency_list(self, graph):
        super()._generate_dependency_list(graph)
        order = scan_first(self.procs, self._group_of, graph, self._order)
        index = {node: i for i, node in enumerate(self.procs)}
        permutation = [index[node] for node in order]
        self.procs = order
        self.depidx = self.depidx[permutation, :][:, permutation]
        self.refidx = self.depidx.astype(int)


class ScanFirstLinearPlugin(LinearPlugin):
    """Nodes run one at a time in this process, scan by scan (see the module docstring).

    As Nipype's Linear: a failed node stops its dependent nodes only (all of them with
    ``stop_on_first_crash``), writes a crash file, and the first error is raised at the end.
    Scans run in ``order`` (see :func:`scan_first`), which the participant workflow's look-ahead
    relies on (:func:`~synthseg_bids.workflows.base.init_participant_wf`).
    """

    def __init__(self, plugin_args: dict | None = None, *, group_of: GroupOf, order: Sequence[Hashable] = ()):
        super().__init__(plugin_args=plugin_args)
        self._group_of = group_of
        self._order = tuple(order)

    def run(self, graph, config, updatehash=False):
        import networkx as nx

        order = scan_first(topological_sort(graph)[0], self._group_of, graph, self._order)
        stop = str(config["execution"]["stop_on_first_crash"]).lower() in ("true", "1", "yes")
        skipped, errors = set(), []
        cwd = os.getcwd()
        try:
            for node in order:
                if node in skipped:
                    continue
                status = "end"
                if self._status_callback:
                    self._status_callback(node, "start")
                try:
                    node.run(updatehash=updatehash)
                except Exception as exc:  # noqa: BLE001 - any node error: recorded, its dependents skipped
                    status = "exception"
                    report_crash(node)
                    skipped.update(nx.descendants(graph, node))
                    errors.append(exc)
                finally:
                    if self._status_callback:
                        self._status_callback(node, status)
                if errors and stop:
                    break
        finally:
            os.chdir(cwd)
        if errors:
            raise RuntimeError(f"{len(errors)} node(s) failed; first: {errors[0]}") from errors[0]
