"""The PromQL of deploy/ (alert rules, dashboard panels), the metric names it reads, and promtool.

Usage: `{name for expr in expressions().values() for name in metric_names(expr)}`
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
PROMETHEUS = DEPLOY / "prometheus"
ALERTS = PROMETHEUS / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "epithre.json"

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool is missing (Debian package `prometheus`; `make install` installs it)",
)

# Grafana's interval variables, replaced by a duration wherever PromQL itself must parse a panel.
GRAFANA_INTERVAL = re.compile(r"\$__(?:rate_interval|interval|range)\b")

_TOKEN = re.compile(
    r"""
      (?P<space>\s+|\#[^\n]*)
    | (?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
    | (?P<variable>\$\{\w+\}|\$\w+)
    | (?P<duration>(?:\d+(?:ms|[smhdwy]))+(?![\w:]))
    | (?P<number>0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
    | (?P<identifier>[a-zA-Z_:][a-zA-Z0-9_:]*)
    | (?P<other>.)
    """,
    re.VERBOSE,
)
# Keywords followed by a list of label names, not by an expression; aggregation operators, which
# may stand before `by (...)` rather than `(`; the other keywords. PromQL reads them in any case.
_LABEL_LISTS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
_AGGREGATIONS = frozenset(
    {
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
        "limitk",
        "limit_ratio",
    }
)
_KEYWORDS = (
    frozenset({"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan"})
    | _LABEL_LISTS
    | _AGGREGATIONS
)
_CLOSING = {"(": ")", "{": "}", "[": "]"}
# In the text format a TYPE line names the family as its samples do (a counter's `_total`
# included where it has one), except that a histogram's samples all add a suffix to it and a
# summary's count and sum do.
_SAMPLE_SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "summary": ("", "_sum", "_count")}


def alert_rules(path: Path = ALERTS) -> list[dict[str, Any]]:
    """The alerting rules of a rules file, in file order."""
    groups = yaml.safe_load(path.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def dashboard_panels(path: Path = DASHBOARD) -> Iterator[dict[str, Any]]:
    """Every panel of a Grafana dashboard, those inside collapsed rows included."""
    todo = list(json.loads(path.read_text())["panels"])
    while todo:
        panel = todo.pop(0)
        todo.extend(panel.get("panels", []))
        yield panel


def expressions() -> dict[str, str]:
    """Every PromQL expression of deploy/, keyed by where it stands."""
    found = {f"alert {rule['alert']}": rule["expr"] for rule in alert_rules()}
    for panel in dashboard_panels():
        for target in panel.get("targets", []):
            found[f"panel {panel['title']!r} {target['refId']}"] = target["expr"]
    return found


def _tokens(expr: str) -> list[tuple[str, str]]:
    return [
        (match.lastgroup or "", match.group())
        for match in _TOKEN.finditer(expr)
        if match.lastgroup != "space"
    ]


def _closing(tokens: list[tuple[str, str]], start: int) -> int:
    """The index of the bracket that closes the one at `start` (the last token if none does)."""
    opening = tokens[start][1]
    depth = 0
    for i in range(start, len(tokens)):
        kind, text = tokens[i]
        if kind == "other" and text == opening:
            depth += 1
        elif kind == "other" and text == _CLOSING[opening]:
            depth -= 1
            if depth == 0:
                return i
    return len(tokens) - 1


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects.

    Skipped: functions (an identifier before `(`), keywords and aggregation operators, label
    names and values inside `{}`, durations inside `[]` and after `offset`, the label lists after
    `by`/`without`/`on`/`ignoring`/`group_left`/`group_right`, strings, numbers and Grafana
    variables. A selector's `{__name__="..."}` counts as its name.
    """
    tokens = _tokens(expr)
    names: set[str] = set()
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        following = tokens[i + 1][1] if i + 1 < len(tokens) else ""
        if kind == "other" and text in ("{", "["):
            end = _closing(tokens, i)
            if text == "{":
                names.update(_name_matchers(tokens[i + 1 : end]))
            i = end
        elif kind == "identifier" and text.lower() in _LABEL_LISTS and following == "(":
            i = _closing(tokens, i + 1)
        elif kind == "identifier" and following != "(" and text.lower() not in _KEYWORDS:
            names.add(text)
        i += 1
    return names


def _name_matchers(matchers: list[tuple[str, str]]) -> Iterator[str]:
    for i in range(len(matchers) - 2):
        (_, label), (_, operator), (kind, value) = matchers[i : i + 3]
        if label == "__name__" and operator == "=" and kind == "string":
            yield value[1:-1]


def exposed_names(exposition: str) -> set[str]:
    """The sample names a text-format exposition has or declares (a labelled family declares
    its names with its `# TYPE` line before it has any sample)."""
    names: set[str] = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            names.update(name + suffix for suffix in _SAMPLE_SUFFIXES.get(kind.strip(), ("",)))
        elif line and not line.startswith("#"):
            match = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line)
            if match:
                names.add(match.group())
    return names


def promtool(*args: str, cwd: Path = PROMETHEUS) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )
