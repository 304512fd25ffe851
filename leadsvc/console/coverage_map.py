"""The coverage map as inline SVG, drawn on the server from the ZIP centres (no tiles, no script).

Each ZIP centre is projected (Albers equal-area conic: the lower 48 states, with Alaska, Hawaii
and Puerto Rico as insets, each fitted to its box from its own points) and binned into small
grid cells: a cell takes the colour of the dealer most of its ZIPs route to. The land is the
same centres drawn larger in light grey, so the outline of the country comes from the data.
One path per dealer (its id the link target that highlights it), one for the unassigned ZIPs.
Drawing ~33,000 ZIPs takes a fraction of a second; the page keeps the result per coverage stamp.
"""

from __future__ import annotations

import colorsys
import functools
import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from html import escape

from leadsvc.dealers.coverage import Coverage

WIDTH, HEIGHT = 960, 600
#: Side of a coloured cell and of a land cell, in SVG units.
CELL, LAND = 3, 7
UNASSIGNED = "#b00020"
LAND_FILL = "#e4e4e4"


@dataclass(frozen=True)
class Region:
    """An Albers projection (standard parallels, origin) fitted into a box of the canvas."""

    parallels: tuple[float, float]
    origin: tuple[float, float]  # (latitude, longitude)
    box: tuple[float, float, float, float]  # left, top, right, bottom


REGIONS = {
    "lower48": Region((29.5, 45.5), (37.5, -96.0), (10, 10, 950, 520)),
    "alaska": Region((55.0, 65.0), (50.0, -154.0), (15, 440, 215, 590)),
    "hawaii": Region((8.0, 18.0), (3.0, -157.0), (230, 500, 380, 590)),
    "caribbean": Region((8.0, 18.0), (18.0, -66.0), (820, 535, 950, 590)),
}
STATE_REGION = {"AK": "alaska", "HI": "hawaii", "PR": "caribbean", "VI": "caribbean"}
#: Places drawn in no box (Pacific territories, military mail): counted under the map.
OFF_MAP = frozenset({"GU", "MP", "AS", "FM", "MH", "PW", "AA", "AE", "AP"})


def region_of(state: str, longitude: float) -> str | None:
    if state in OFF_MAP or longitude > -60 or longitude < -180:
        return None
    return STATE_REGION.get(state, "lower48")


@functools.cache
def _constants(region: Region) -> tuple[float, float, float, float]:
    phi1, phi2 = map(math.radians, region.parallels)
    phi0, lam0 = map(math.radians, region.origin)
    n = (math.sin(phi1) + math.sin(phi2)) / 2
    c = math.cos(phi1) ** 2 + 2 * n * math.sin(phi1)
    return n, c, math.sqrt(c - 2 * n * math.sin(phi0)) / n, lam0


def albers(region: Region, latitude: float, longitude: float) -> tuple[float, float]:
    """Albers equal-area conic on the unit sphere (y grows northwards)."""
    n, c, rho0, lam0 = _constants(region)
    rho = math.sqrt(c - 2 * n * math.sin(math.radians(latitude))) / n
    theta = n * (math.radians(longitude) - lam0)
    return rho * math.sin(theta), rho0 - rho * math.cos(theta)


class Projection:
    """Projects points into the canvas, each region scaled to fill its box (aspect kept)."""

    def __init__(self, projected: Iterable[tuple[str, float, float]]):
        """`projected`: (region, x, y) of every point, as `albers` gives them."""
        extents: dict[str, list[float]] = {}
        for region, x, y in projected:
            e = extents.setdefault(region, [x, y, x, y])
            e[0], e[1], e[2], e[3] = min(e[0], x), min(e[1], y), max(e[2], x), max(e[3], y)
        self._fit: dict[str, tuple[float, float, float]] = {}
        for region, (x0, y0, x1, y1) in extents.items():
            left, top, right, bottom = REGIONS[region].box
            scale = min((right - left) / max(x1 - x0, 1e-9), (bottom - top) / max(y1 - y0, 1e-9))
            # Centred in the box; y flipped (SVG grows downwards).
            dx = left + ((right - left) - (x1 - x0) * scale) / 2 - x0 * scale
            dy = top + ((bottom - top) - (y1 - y0) * scale) / 2 + y1 * scale
            self._fit[region] = (scale, dx, dy)

    def place(self, region: str, x: float, y: float) -> tuple[float, float]:
        """Canvas position of a point `albers` projected."""
        scale, dx, dy = self._fit[region]
        return x * scale + dx, dy - y * scale

    def __call__(self, region: str, latitude: float, longitude: float) -> tuple[float, float]:
        return self.place(region, *albers(REGIONS[region], latitude, longitude))

    def has(self, region: str | None) -> bool:
        return region in self._fit


def dealer_colour(index: int) -> str:
    """Distinct colours for neighbours in code order (golden-angle hues, two lightnesses)."""
    hue = (index * 0.381966) % 1.0
    lightness = 0.42 if index % 2 else 0.55
    r, g, b = colorsys.hls_to_rgb(hue, lightness, 0.65)
    return f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}"


def _squares(cells: Iterable[tuple[int, int]], side: int) -> str:
    """One path of `side`-sized squares at the given cell positions, each row's neighbouring
    cells joined into one rectangle (a third of the text)."""
    runs: list[list[int]] = []  # [x, y, length]
    for x, y in sorted(cells, key=lambda cell: (cell[1], cell[0])):
        if runs and runs[-1][1] == y and runs[-1][0] + runs[-1][2] == x:
            runs[-1][2] += 1
        else:
            runs.append([x, y, 1])
    return "".join(f"M{x * side} {y * side}h{n * side}v{side}h-{n * side}z" for x, y, n in runs)


@dataclass(frozen=True)
class CoverageMap:
    svg: str
    colours: dict[int, str]
    off_map: int
    unassigned: int


def draw(coverage: Coverage) -> CoverageMap:
    """The map of `coverage` as an SVG element (a string ready to put in the page)."""
    projected = []  # (region, x, y, dealer id): each ZIP projected once
    for z in coverage.zips:
        region = region_of(z.state, z.longitude)
        if region is not None:
            projected.append(
                (region, *albers(REGIONS[region], z.latitude, z.longitude), z.dealer_id)
            )
    projection = Projection(point[:3] for point in projected)
    colours = {d.id: dealer_colour(i) for i, d in enumerate(coverage.dealers)}
    land: set[tuple[int, int]] = set()
    votes: dict[tuple[int, int], Counter] = defaultdict(Counter)
    for region, raw_x, raw_y, dealer_id in projected:
        x, y = projection.place(region, raw_x, raw_y)
        land.add((int(x // LAND), int(y // LAND)))
        votes[(int(x // CELL), int(y // CELL))][dealer_id] += 1
    areas: dict[int | None, list[tuple[int, int]]] = defaultdict(list)
    for cell, counter in votes.items():
        areas[counter.most_common(1)[0][0]].append(cell)
    parts = [
        f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="map-title" '
        'xmlns="http://www.w3.org/2000/svg" class="coverage-map">',
        '<title id="map-title">Coverage map: each ZIP centre coloured by its dealer</title>',
        f'<path class="land" fill="{LAND_FILL}" d="{_squares(land, LAND)}"/>',
    ]
    for dealer in coverage.dealers:
        if areas.get(dealer.id):
            parts.append(
                f'<path id="area-{escape(dealer.code)}" class="area" fill="{colours[dealer.id]}" '
                f'd="{_squares(areas[dealer.id], CELL)}"><title>{escape(dealer.code)}: '
                f"{dealer.zips} ZIPs</title></path>"
            )
    if areas.get(None):
        parts.append(
            f'<path id="area-unassigned" class="area unassigned" fill="{UNASSIGNED}" '
            f'd="{_squares(areas[None], CELL)}"><title>Unassigned ZIPs</title></path>'
        )
    parts.extend(_markers(coverage, projection, colours))
    parts.append("</svg>")
    unassigned = sum(1 for z in coverage.zips if z.dealer_id is None)
    off_map = len(coverage.zips) - len(projected)
    return CoverageMap("".join(parts), colours, off_map, unassigned)


def _markers(coverage: Coverage, projection: Projection, colours: dict[int, str]) -> list[str]:
    """A pin per dealer (black, inactive ones white), each a link that highlights its area."""
    marks = []
    for dealer in coverage.dealers:
        region = region_of(dealer.state, dealer.longitude)
        if not projection.has(region):
            continue
        x, y = projection(region, dealer.latitude, dealer.longitude)
        label = escape(f"{dealer.code} {dealer.name}" + ("" if dealer.active else " (inactive)"))
        fill, ring = ("#111111", "#ffffff") if dealer.active else ("#ffffff", "#111111")
        marks.append(
            f'<a href="#area-{escape(dealer.code)}" class="pin" aria-label="{label}">'
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5" fill="{fill}" stroke="{ring}" '
            f'stroke-width="2"/><title>{label}</title></a>'
        )
    return marks
