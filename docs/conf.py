"""Sphinx configuration of the synthseg-bids documentation (MyST Markdown pages, API from docstrings).

Build (warnings are errors): ``python -m sphinx -W --keep-going -b html docs docs/_build/html``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# importing the package's modules must stay quiet and offline (Nipype's version check, TensorFlow's start-up lines)
os.environ.setdefault("NIPYPE_NO_ET", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from synthseg_bids import __version__

project = "synthseg-bids"
author = "synthseg-bids developers"
copyright = "synthseg-bids developers, Apache-2.0"
version = release = __version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "nipype.sphinxext.plot_workflow",  # the ``.. workflow::`` graphs of the init_*_wf docstrings
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "model/README.md"]
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_inherit_docstrings = False  # Keras/Nipype base-class docstrings are not reStructuredText
autodoc_typehints = "description"
napoleon_numpy_docstring = True
napoleon_google_docstring = False
napoleon_use_rtype = False
napoleon_use_ivar = True  # NamedTuple fields: documented once, by the Attributes section

wf_formats = ["png"]  # nipype's ``.. workflow::`` graphs
wf_html_show_formats = False
wf_html_show_source_link = False

html_theme = "furo"
html_title = f"synthseg-bids {__version__}"
html_static_path: list[str] = []
