"""`kojo dashboard`: a web dashboard over the database, with Prometheus metrics.

It needs the `dashboard` extra (`pip install 'kojo[dashboard]'`); this module imports
none of it, so that the command can say what is missing in one line.
"""

from __future__ import annotations

from importlib.util import find_spec

REQUIRED = {
    "starlette": "starlette",
    "uvicorn": "uvicorn",
    "jinja2": "jinja2",
    "prometheus_client": "prometheus_client",
}


def missing_requirements() -> list[str]:
    """The packages of the dashboard extra that cannot be imported here."""
    return [package for module, package in REQUIRED.items() if find_spec(module) is None]
