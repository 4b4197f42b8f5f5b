"""SVG figures from synthetic plots: values land on the pixels they should, and every text is escaped."""

import re
import xml.etree.ElementTree as ET
from typing import Any

import pytest

from diagnostics.svgplot import HEIGHT, WIDTH, plot_area, render_svg

AREA = plot_area(WIDTH, HEIGHT)


def plot(kind: str = "line", **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "kind": kind, "title": "a figure", "x_label": "time (s)", "y_label": "level (dB)", "x_log": False,
        "series": [{"name": "data", "x": [0.0, 5.0, 10.0], "y": [0.0, 50.0, 100.0]}],
        "hlines": [], "vlines": [], "y_range": [0.0, 100.0],
    }
    data.update(changes)
    return data


def svg_of(data: dict[str, Any]) -> ET.Element:
    return ET.fromstring(render_svg(data))  # well-formed XML, or this raises


def row(fraction_up: float) -> float:
    """The pixel row a fraction of the y axis up from the bottom should land on."""
    return AREA.bottom - fraction_up * (AREA.bottom - AREA.top)


def column(fraction_right: float) -> float:
    return AREA.left + fraction_right * (AREA.right - AREA.left)


def by_class(svg: ET.Element, css_class: str) -> list[ET.Element]:
    return [e for e in svg.iter() if e.get("class") == css_class]


def test_an_hline_lands_on_its_pixel_row_and_carries_its_label() -> None:
    svg = svg_of(plot(hlines=[{"y": 25.0, "label": "too quiet"}, {"y": -34.0, "label": "off the axis"}]))
    (line,) = by_class(svg, "hline")  # a line outside y_range is left out
    assert float(line.get("y1", "nan")) == pytest.approx(row(0.25), abs=0.06)
    assert float(line.get("y2", "nan")) == float(line.get("y1", "nan"))
    assert float(line.get("x1", "nan")) == AREA.left and float(line.get("x2", "nan")) == AREA.right
    (label,) = by_class(svg, "hline-label")
    assert label.text == "too quiet"
    assert float(label.get("y", "nan")) < float(line.get("y1", "nan"))  # just above its line


def test_a_vline_lands_on_its_pixel_column() -> None:
    svg = svg_of(plot(vlines=[{"x": 2.5, "label": "echo after 2.5 s"}]))
    (line,) = by_class(svg, "vline")
    assert float(line.get("x1", "nan")) == pytest.approx(column(0.25), abs=0.06)
    assert float(line.get("y1", "nan")) == AREA.top and float(line.get("y2", "nan")) == AREA.bottom
    assert by_class(svg, "vline-label")[0].text == "echo after 2.5 s"


def test_a_line_passes_through_its_points() -> None:
    svg = svg_of(plot())
    points = [tuple(map(float, p.split(","))) for p in svg.find(".//polyline").get("points", "").split()]  # type: ignore[union-attr]
    expected = [(column(0.0), row(0.0)), (column(0.5), row(0.5)), (column(1.0), row(1.0))]
    assert points == [pytest.approx(p, abs=0.06) for p in expected]


def test_bars_stand_on_zero_and_reach_their_value() -> None:
    svg = svg_of(plot("bars", series=[{"name": "loss", "x": [1.0, 2.0, 3.0], "y": [10.0, 50.0, 0.0]}],
                      y_range=[-50.0, 50.0]))
    rects = [r for r in svg.iter("rect") if r.get("fill") != "none"]
    assert len(rects) == 3
    zero = row(0.5)
    tops = [float(r.get("y", "nan")) for r in rects]
    heights = [float(r.get("height", "nan")) for r in rects]
    assert tops[1] == pytest.approx(row(1.0), abs=0.06) and heights[1] == pytest.approx(zero - row(1.0), abs=0.1)
    assert tops[0] + heights[0] == pytest.approx(zero, abs=0.1)
    assert heights[0] == pytest.approx(0.1 * AREA.height, abs=0.1)
    assert heights[2] == 0.0


def test_impulses_rise_from_the_bottom_of_the_axis() -> None:
    svg = svg_of(plot("impulse", series=[{"name": "echo", "x": [0.0, 10.0], "y": [-90.0, -10.0]}],
                      y_range=[-100.0, 0.0]))
    path = svg.find(".//path")
    assert path is not None
    stems = re.findall(r"M([\d.]+) ([\d.]+)V([\d.]+)", path.get("d", ""))
    assert [tuple(map(float, s)) for s in stems] == [
        pytest.approx((column(0.0), AREA.bottom, row(0.1)), abs=0.06),
        pytest.approx((column(1.0), AREA.bottom, row(0.9)), abs=0.06),
    ]


def test_values_beyond_the_y_range_are_held_at_its_edge() -> None:
    svg = svg_of(plot(series=[{"name": "level", "x": [0.0, 10.0], "y": [-200.0, 300.0]}]))
    points = svg.find(".//polyline").get("points", "")  # type: ignore[union-attr]
    assert points == f"{column(0.0):.1f},{row(0.0):.1f} {column(1.0):.1f},{row(1.0):.1f}"


def test_a_log_x_axis_puts_decades_equally_apart_with_1_2_5_ticks() -> None:
    data = plot(x_log=True, series=[{"name": "psd", "x": [10.0, 100.0, 1000.0, 10000.0], "y": [0.0] * 4}],
                vlines=[{"x": 100.0, "label": "100 Hz"}])
    svg = svg_of(data)
    assert float(by_class(svg, "vline")[0].get("x1", "nan")) == pytest.approx(column(1 / 3), abs=0.06)
    labels = [t.text for t in by_class(svg, "tick")]
    assert {"10", "20", "50", "100", "1k", "2k", "5k", "10k"} <= set(labels)


def test_an_automatic_y_axis_takes_in_data_and_lines_on_nice_ticks() -> None:
    data = plot(series=[{"name": "d", "x": [0.0, 1.0], "y": [-47.3, -3.2]}], hlines=[{"y": -61.0, "label": "x"}],
                y_range=None)
    ticks = [float(t.text or "nan") for t in by_class(svg_of(data), "tick") if t.get("text-anchor") == "end"]
    assert ticks == [-70.0, -60.0, -50.0, -40.0, -30.0, -20.0, -10.0, 0.0]


def test_every_text_is_escaped() -> None:
    evil = '<script>alert("x")</script> & \'quotes\''
    data = plot(title=evil, x_label=evil, y_label=evil, hlines=[{"y": 50.0, "label": evil}],
                series=[{"name": evil, "x": [0.0, 1.0], "y": [1.0, 2.0]}])
    text = render_svg(data)
    assert "<script" not in text and "&lt;script&gt;" in text
    svg = ET.fromstring(text)
    assert svg.find("title") is not None and svg.find("title").text == evil  # type: ignore[union-attr]
    assert {e.text for e in svg.iter("text")} >= {evil}
    assert svg.find(".//g[@class='series']").get("data-name") == evil  # type: ignore[union-attr]


def test_a_plot_without_points_says_so() -> None:
    svg = svg_of(plot(series=[{"name": "nothing", "x": [], "y": []}], y_range=None))
    assert "no data" in [t.text for t in svg.iter("text")]


def test_the_svg_has_its_size_and_refers_to_nothing_outside() -> None:
    text = render_svg(plot())
    svg = ET.fromstring(text)
    size = (svg.get("width"), svg.get("height"), svg.get("viewBox"))
    assert size == (str(WIDTH), str(HEIGHT), f"0 0 {WIDTH} {HEIGHT}")
    assert "http" not in text and "href" not in text
