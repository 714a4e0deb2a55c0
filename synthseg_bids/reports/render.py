"""Rendering the reports' jinja2 templates (package data under ``synthseg_bids/reports/templates``)."""

from __future__ import annotations

from functools import lru_cache

import jinja2

__all__ = ["number", "render"]


def number(value: float) -> str:
    """A measured value for reading: whole numbers from 100 up (``1,944``), three significant digits below."""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("synthseg_bids.reports", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["number"] = number
    return environment


def render(template: str, **context) -> str:
    """The page of ``template`` (a file name in the templates folder) filled with ``context``."""
    return _environment().get_template(template).render(**context)
