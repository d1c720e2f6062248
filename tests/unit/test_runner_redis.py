"""runner/redis.py: Debian's redis-server on loopback, supervised like every cluster child."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from runner.cluster import free_ports
from runner.processes import wait_gone
from runner.redis import BINARY, LocalRedis
from runner.supervisor import Supervisor

pytestmark = pytest.mark.skipif(
    not Path(BINARY).exists(),
    reason="redis-server is missing (Debian package `redis-server`; `make install` installs it)",
)


@pytest.fixture
def supervised(tmp_path: Path) -> Iterator[Supervisor[LocalRedis]]:
    supervisor = Supervisor(LocalRedis(port=free_ports(1)[0], workdir=tmp_path), name="redis")
    supervisor.start()
    yield supervisor
    supervisor.stop()


def test_it_answers_on_its_port_keeps_nothing_on_disk_and_leads_its_own_group(
    supervised: Supervisor[LocalRedis], tmp_path: Path
) -> None:
    local = supervised.child
    with redis.Redis.from_url(local.url) as client:
        assert client.ping() is True
        config = client.config_get("save") | client.config_get("appendonly")
        config |= client.config_get("dir")
    assert local.url == f"redis://127.0.0.1:{local.port}/0"
    assert config == {"save": "", "appendonly": "no", "dir": str(tmp_path)}
    assert os.getpgid(supervised.pid) == supervised.pid
    pid = supervised.pid
    supervised.stop()
    assert wait_gone([pid], deadline_s=5) == []
    assert not local.ready()


def test_a_killed_server_is_restarted_empty_on_its_port_with_its_log_appended(
    supervised: Supervisor[LocalRedis],
) -> None:
    local = supervised.child
    with redis.Redis.from_url(local.url) as client:
        client.set("budget", "1")
    killed = supervised.pid
    os.kill(killed, signal.SIGKILL)
    supervised.wait_replaced(killed, deadline_s=15)
    with redis.Redis.from_url(local.url) as client:
        assert client.get("budget") is None
    assert local.log_path.read_text().count("Ready to accept connections") == 2


def test_it_is_not_ready_while_nothing_answers_on_its_port(tmp_path: Path) -> None:
    assert not LocalRedis(port=free_ports(1)[0], workdir=tmp_path).ready()
