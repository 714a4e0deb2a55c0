"""Reports: figures, the subject and group HTML pages (jinja2 templates), methods text and citations.

- :mod:`.figures`: the subject report's mosaic (plain and overlaid slices) and the group
  report's thumbnails;
- :mod:`.subject`: ``<output_dir>/sub-<label>.html``; :mod:`.group`: ``<output_dir>/group/report.html``
  (its charts' geometry: :mod:`.charts`);
- :mod:`.methods`: the methods text, one describer per configured choice, and ``logs/CITATION.md``/``.bib``;
- :mod:`.render`: the templates (package data in ``templates/``).

Imports numpy, pandas, nibabel, Pillow and jinja2; never Nipype (the interfaces call in).
"""
