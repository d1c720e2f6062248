"""deploy/grafana/epithre.json: a dashboard any Grafana imports, whose every query parses.

The metric names it reads are checked against live servers in
tests/integration/test_observability.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tests.promql import (
    DASHBOARD,
    GRAFANA_INTERVAL,
    dashboard_panels,
    needs_promtool,
    promtool,
)

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
PANELS = [panel for panel in dashboard_panels() if panel["type"] != "row"]


def test_prometheus_datasource_is_a_template_variable() -> None:
    variables = json.loads(DASHBOARD.read_text())["templating"]["list"]
    assert {"name": "datasource", "type": "datasource", "query": "prometheus"}.items() <= next(
        v for v in variables if v["name"] == "datasource"
    ).items()


def test_every_panel_and_query_reads_the_datasource_variable() -> None:
    assert PANELS
    for panel in PANELS:
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        assert all(target["datasource"] == DATASOURCE for target in panel["targets"])


def test_panel_ids_and_query_ids_are_unique() -> None:
    ids = [panel["id"] for panel in dashboard_panels()]
    assert len(ids) == len(set(ids))
    for panel in PANELS:
        refs = [target["refId"] for target in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]


def test_panels_do_not_overlap() -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in dashboard_panels():
        grid = panel["gridPos"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, (panel["title"], cells.get((x, y)))
                cells[(x, y)] = panel["title"]
    assert max(x for x, _ in cells) < 24


@needs_promtool
def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    # promtool parses a rule file's expressions: each query becomes a recording rule.
    rules = [
        {
            "record": f"dashboard:panel_{panel['id']}_{target['refId']}",
            "expr": GRAFANA_INTERVAL.sub("5m", target["expr"]),
        }
        for panel in PANELS
        for target in panel["targets"]
    ]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout
