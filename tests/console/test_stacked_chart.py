"""The stacked bar charts drawn as SVG: every non-zero value a bar of its height, stacked in
order, the axis in round numbers, names from visitors escaped."""

from __future__ import annotations

import re
from xml.etree import ElementTree

from leadsvc.console.charts import stacked_chart
from leadsvc.console.stacked_svg import PLOT, nice_ticks

SVG = "{http://www.w3.org/2000/svg}"


def test_each_value_is_a_bar_of_its_height_stacked_in_order():
    labels = ["Dec 01", "Dec 02", "Dec 03"]
    svg = stacked_chart("Signups", labels, {"New": [4, 0, 10], "Repeat": [6, 0, 5]})
    root = ElementTree.fromstring(svg)
    bars = [r for r in root.iter(f"{SVG}rect") if r.find(f"{SVG}title") is not None]
    titles = [bar.find(f"{SVG}title").text for bar in bars]
    assert titles == ["Dec 01, New: 4", "Dec 01, Repeat: 6", "Dec 03, New: 10", "Dec 03, Repeat: 5"]
    top, bottom = PLOT[1], PLOT[3]
    scale = (bottom - top) / 15  # the axis goes to 15 (ticks of 5)
    heights = [float(bar.get("height")) for bar in bars]
    assert heights == [round(v * scale, 1) for v in (4, 6, 10, 5)]
    # Stacked: the second series starts where the first ends.
    assert float(bars[1].get("y")) + heights[1] == float(bars[0].get("y"))
    assert float(bars[0].get("y")) + heights[0] == bottom
    assert [t.text for t in root.iter(f"{SVG}text")][:1] == ["Signups"]


def test_names_from_visitors_are_escaped():
    svg = stacked_chart("By campaign", ["Dec 01"], {'<script>alert("x")</script>': [3]})
    assert b"<script>" not in svg
    ElementTree.fromstring(svg)  # still well-formed
    assert re.search(rb"&lt;script&gt;alert\(&quot;x&quot;\)&lt;/script&gt;", svg)


def test_the_axis_goes_up_in_round_steps():
    assert nice_ticks(0) == [0, 1]
    assert nice_ticks(3) == [0, 1, 2, 3]
    assert nice_ticks(15) == [0, 5, 10, 15]
    assert nice_ticks(1234) == [0, 500, 1000, 1500]
