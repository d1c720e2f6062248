"""The environment a `python -m gateway` child gets (runner/gateway.py)."""

from __future__ import annotations

from runner.gateway import LocalGateway


def test_the_target_address_and_ports_come_from_the_arguments() -> None:
    gateway = LocalGateway(
        "ipv4:127.0.0.1:8001,127.0.0.1:8011",
        port=8101,
        metrics_port=9101,
        settings={"EPITHRE_PORT": "1", "EPITHRE_TRITON_URL": "elsewhere:1"},
    )
    env = gateway.environment()
    assert env["EPITHRE_TRITON_URL"] == "ipv4:127.0.0.1:8001,127.0.0.1:8011"
    assert (env["EPITHRE_HOST"], env["EPITHRE_PORT"]) == ("127.0.0.1", "8101")
    assert env["EPITHRE_METRICS_PORT"] == "9101"
    assert gateway.metrics_url == "http://127.0.0.1:9101/metrics"


def test_settings_win_over_this_process_environment(monkeypatch) -> None:
    monkeypatch.setenv("EPITHRE_DRAIN_S", "30")
    monkeypatch.setenv("EPITHRE_API_KEYS", "from-the-shell")
    gateway = LocalGateway("127.0.0.1:8001", port=8101, settings={"EPITHRE_DRAIN_S": "4"})
    env = gateway.environment()
    assert (env["EPITHRE_DRAIN_S"], env["EPITHRE_API_KEYS"]) == ("4", "from-the-shell")
    assert gateway.drain_s == 4.0


def test_without_a_metrics_port_metrics_stay_on_the_public_port(monkeypatch) -> None:
    monkeypatch.delenv("EPITHRE_METRICS_PORT", raising=False)
    gateway = LocalGateway("127.0.0.1:8001", port=8101)
    assert "EPITHRE_METRICS_PORT" not in gateway.environment()
    assert gateway.metrics_url == "http://127.0.0.1:8101/metrics"
