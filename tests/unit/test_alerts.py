"""deploy/prometheus/alerts.yml: valid rules, each with promtool unit tests and a runbook section.

promtool (Debian's `prometheus` package) checks the rules and runs alerts_test.yml; these tests
also make sure that no alert goes without a case where it fires and one where it stays quiet.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.promql import ALERTS, PROMETHEUS, alert_rules, needs_promtool, promtool

ALERT_TESTS = PROMETHEUS / "alerts_test.yml"
OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
RULES = alert_rules()


def _alert_cases() -> list[dict[str, Any]]:
    tests = yaml.safe_load(ALERT_TESTS.read_text())["tests"]
    return [case for test in tests for case in test.get("alert_rule_test", [])]


def _anchors(markdown: str) -> set[str]:
    """GitHub's anchors of a Markdown file's headings."""
    headings = re.findall(r"^#+\s+(.+?)\s*$", markdown, flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


@needs_promtool
def test_rules_pass_promtool_check() -> None:
    result = promtool("check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(RULES)} rules found" in result.stdout


@needs_promtool
def test_rules_pass_their_promtool_unit_tests() -> None:
    result = promtool("test", "rules", str(ALERT_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_deployed_prometheus_config_loads_the_rules() -> None:
    result = promtool("check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(RULES)} rules found" in result.stdout


def test_alert_names_are_unique() -> None:
    names = [rule["alert"] for rule in RULES]
    assert len(names) == len(set(names))


def test_every_alert_has_a_case_where_it_fires() -> None:
    firing = {case["alertname"] for case in _alert_cases() if case.get("exp_alerts")}
    assert [r["alert"] for r in RULES if r["alert"] not in firing] == []


def test_every_alert_has_a_case_where_it_stays_quiet() -> None:
    quiet = {case["alertname"] for case in _alert_cases() if not case.get("exp_alerts")}
    assert [r["alert"] for r in RULES if r["alert"] not in quiet] == []


def test_the_tests_expect_only_alerts_that_exist() -> None:
    names = {rule["alert"] for rule in RULES}
    assert {case["alertname"] for case in _alert_cases()} <= names


@pytest.mark.parametrize("rule", RULES, ids=[rule["alert"] for rule in RULES])
def test_alert_has_a_severity_a_duration_and_words_for_the_operator(rule: dict[str, Any]) -> None:
    assert rule["labels"]["severity"] in ("critical", "warning")
    # A single bad scrape or evaluation never pages anyone.
    assert re.fullmatch(r"\d+[smh]", rule["for"])
    annotations = rule["annotations"]
    assert annotations["summary"].strip()
    assert len(annotations["description"]) > len(annotations["summary"])


@pytest.mark.parametrize("rule", RULES, ids=[rule["alert"] for rule in RULES])
def test_alert_runbook_is_a_section_of_docs_operations(rule: dict[str, Any]) -> None:
    page, _, anchor = rule["annotations"]["runbook"].partition("#")
    assert page == "docs/operations.md"
    assert anchor == rule["alert"].lower()
    assert anchor in _anchors(OPERATIONS.read_text())
