"""The deployment's Prometheus config pointed at local targets (runner/prometheus.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from runner.prometheus import DEPLOYMENT, scrape_config
from tests.promql import PROMTOOL, needs_promtool

TARGETS = {
    "gateway": ["127.0.0.1:9101", "127.0.0.1:9102"],
    "triton": ["127.0.0.1:8002", "127.0.0.1:8012"],
}


def test_each_job_scrapes_the_targets_given_for_it() -> None:
    config = scrape_config(TARGETS, interval_s=1)
    scraped = {
        job["job_name"]: [target for group in job["static_configs"] for target in group["targets"]]
        for job in config["scrape_configs"]
    }
    assert scraped == TARGETS


def test_rules_come_from_deploy_and_everything_runs_at_the_interval() -> None:
    config = scrape_config(TARGETS, interval_s=0.5)
    assert config["rule_files"] == [str(DEPLOYMENT / "alerts.yml")]
    assert config["global"] == {"scrape_interval": "500ms", "evaluation_interval": "500ms"}


def test_targets_for_other_jobs_than_the_deployments_are_refused() -> None:
    with pytest.raises(ValueError, match=r"jobs \['gateway', 'triton'\], not \['gateway'\]"):
        scrape_config({"gateway": ["127.0.0.1:9101"]}, interval_s=1)


@needs_promtool
def test_promtool_accepts_the_rendered_config_and_its_rules(tmp_path: Path) -> None:
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(scrape_config(TARGETS, interval_s=1)))
    assert PROMTOOL is not None
    result = subprocess.run(
        [PROMTOOL, "check", "config", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
