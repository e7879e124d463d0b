"""The dashboard: what the router learned and why it decides as it does.

- live, at ``/dashboard`` on the gateway (:mod:`zeta_fast.gateway`): a page
  of plain HTML, CSS and JavaScript shipped in this package (no build step,
  no registry) polling ``/dashboard/data`` twice a second;
- offline, ``zeta-fast report`` (:mod:`zeta_fast.dashboard.report`): the
  same views from an outcome log, as PNG plots and one self-contained HTML
  file.
"""

from __future__ import annotations

from importlib.resources import files

from zeta_fast.dashboard.views import History, live_view, penalty_reasons

__all__ = ["STATIC_FILES", "History", "live_view", "penalty_reasons", "static_file"]

#: The page's files and their content types.
STATIC_FILES = {
    "index.html": "text/html",
    "dashboard.js": "text/javascript",
    "dashboard.css": "text/css",
}


def static_file(name: str) -> bytes:
    """One of :data:`STATIC_FILES`, as shipped."""
    if name not in STATIC_FILES:
        raise KeyError(name)
    return (files("zeta_fast.dashboard") / "static" / name).read_bytes()
