"""The road through the code goes down only: cli -> workflows -> interfaces -> bids/inference/... -> core."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "synthseg_bids"


def imported_modules(path: Path) -> set[str]:
    """Absolute names of the package modules a file imports (relative imports resolved)."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = list(parts[: len(parts) - node.level]) if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            found.add(module)
            found |= {f"{module}.{alias.name}" for alias in node.names}
    return found


@pytest.mark.parametrize(
    ("layer", "forbidden"),
    [
        ("cli", ("synthseg_bids.interfaces",)),
        ("bids", ("nipype", "synthseg_bids.interfaces", "synthseg_bids.workflows", "synthseg_bids.cli")),
        ("interfaces", ("synthseg_bids.workflows", "synthseg_bids.cli")),
        ("workflows", ("synthseg_bids.cli",)),
        ("core", ("bids", "nipype", "synthseg_bids.bids", "synthseg_bids.interfaces")),
        ("reports", ("nipype", "synthseg_bids.interfaces", "synthseg_bids.workflows", "synthseg_bids.cli")),
    ],
)
def test_layer_imports_point_down(layer, forbidden):
    offenders = sorted(
        f"{path.relative_to(PACKAGE)} imports {name}"
        for path in (PACKAGE / layer).rglob("*.py")
        for name in imported_modules(path)
        if any(name == f or name.startswith(f + ".") for f in forbidden)
    )
    assert offenders == []


def test_the_checker_resolves_relative_imports():
    """The check can fail: cli/run.py's function-level ``from ..workflows.base import ...`` is seen."""
    found = imported_modules(PACKAGE / "cli" / "run.py")
    assert {"synthseg_bids.workflows.base", "synthseg_bids.bids", "synthseg_bids.core.progress"} <= found
