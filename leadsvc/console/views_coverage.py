"""Admin: the coverage map, every ZIP centre coloured by its dealer (SVG drawn on the server)."""

from __future__ import annotations

import threading

from flask import current_app, render_template
from markupsafe import Markup

from leadsvc.console.access import roles
from leadsvc.console.coverage_map import UNASSIGNED, CoverageMap, draw
from leadsvc.console.frame import blp
from leadsvc.dealers.coverage import coverage as coverage_of
from leadsvc.dealers.coverage import coverage_stamp
from leadsvc.extensions import db

_CACHE_KEY = "leadsvc.console.coverage"


class _MapCache:
    """The last map drawn and the coverage stamp it was drawn for (a new stamp redraws)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.stamp = None
        self.drawn: tuple | None = None


def current_map() -> tuple[CoverageMap, list]:
    """(map, dealers) for the coverage as it is now, drawn again only when it changed."""
    cache = current_app.extensions.setdefault(_CACHE_KEY, _MapCache())
    stamp = coverage_stamp(db.session)
    with cache.lock:
        if cache.stamp != stamp or cache.drawn is None:
            data = coverage_of(db.session)
            cache.drawn = (draw(data), data.dealers)
            cache.stamp = stamp
        return cache.drawn


@blp.route("/coverage")
@roles("admin")
def coverage():
    """The map, with the dealers listed beside it (each a link that highlights its area)."""
    drawn, dealers = current_map()
    return render_template(
        "console/coverage.html",
        section="coverage",
        svg=Markup(drawn.svg),
        map=drawn,
        dealers=dealers,
        unassigned_colour=UNASSIGNED,
    )
