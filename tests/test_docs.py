"""The documentation site builds with warnings as errors, and every page and README link is there.

Needs the ``docs`` extra (``pip install -e ".[docs]"``) and Graphviz's ``dot`` (the workflow
graphs of the API reference); skips, saying which is missing, without them.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
pytestmark = pytest.mark.docs


def _missing_tools() -> list[str]:
    missing = [m for m in ("sphinx", "myst_parser", "furo") if importlib.util.find_spec(m) is None]
    if shutil.which("dot") is None:
        missing.append("Graphviz's dot")
    return missing


def _source_pages() -> list[Path]:
    excluded = {DOCS / "model" / "README.md"}  # measurement notes kept next to their files, linked as source
    return sorted(p for p in DOCS.rglob("*.md") if "_build" not in p.parts and p not in excluded)


def test_site_builds_without_warnings(tmp_path):
    missing = _missing_tools()
    if missing:
        pytest.skip(f"documentation tools not installed: {', '.join(missing)} (pip install -e '.[docs]')")
    out = tmp_path / "html"
    env = dict(os.environ, NIPYPE_NO_ET="1", TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
                           str(DOCS), str(out)], capture_output=True, text=True, env=env, timeout=900, check=False)
    # TensorFlow's C++ logger announces itself on stderr when a page imports it; that line is not Sphinx's
    warnings = [ln for ln in proc.stderr.splitlines()
                if ("WARNING" in ln or "ERROR" in ln) and "absl::InitializeLog" not in ln]
    assert proc.returncode == 0, "\n".join(warnings) or proc.stderr[-3000:]
    # every source page became an HTML page (the sources, listed independently of Sphinx)
    expected = {p.relative_to(DOCS).with_suffix(".html") for p in _source_pages()}
    built = {p.relative_to(out) for p in out.rglob("*.html")}
    assert expected <= built, sorted(map(str, expected - built))
    assert "SurfaceDistances" in (out / "api" / "evaluation.html").read_text()  # the API pages have content
    # one drawn graph per ``.. workflow::`` directive of the package's docstrings, none empty, none repeated
    directives = sum(p.read_text().count(".. workflow::") for p in (ROOT / "synthseg_bids").rglob("*.py"))
    graphs = [p.read_bytes() for p in (out / "_images").glob("workflows-*.png")]
    assert len(graphs) == directives and len(set(graphs)) == directives
    assert min(int.from_bytes(g[16:20], "big") for g in graphs) > 100  # PNG width: a graph, not an empty canvas


def test_readme_links_to_existing_pages():
    text = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\((docs/[^)#\s]+)", text)
    assert links, "the README links to the documentation pages"
    assert [link for link in links if not (ROOT / link).exists()] == []
    assert len((ROOT / "README.md").read_bytes()) <= 15_000
