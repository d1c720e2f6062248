"""`python -m runner.cluster` (`make cluster`): the production topology on one machine.

    client -> HAProxy :8000 -> gateway-1, gateway-2    (health checks on /health/ready, retries)
    each gateway -> one gRPC channel, round_robin -> triton-1, triton-2
    both gateways -> Redis :6380                       (one rate-limit budget per key for both)
    both gateways -> PostgreSQL :5433 with --database postgresql (the Files and Batch APIs'
                     metadata: either gateway's batch worker resumes the other's chunks)
    Prometheus :9090 scrapes both gateways' and both Tritons' metrics (deploy/ config and rules)

Every process runs under its own supervisor, which starts it again when it exits (1 s, doubling up
to 30 s, between failed tries). The Tritons run one instance of each tower (two servers share the
machine's cores) from a repository of links to the export (runner/repository.py). Start: the
Tritons, Redis, Prometheus (and PostgreSQL) side by side, then the gateways, then HAProxy. Ctrl-C
or SIGTERM stops in the reverse order: HAProxy first (its soft stop lets the requests in flight
finish, and nothing reaches a gateway after it), then the gateways, then the rest. Each process
leads its own process group, which its stop ends entirely. Redis keeps nothing on disk:
restarted, it starts every key's budget full. PostgreSQL keeps its database in
build/cluster/postgres/ from one run to the next. Both gateways share one data dir, data/ in the
checkout unless EPITHRE_DATA_DIR names another: with SQLite for the metadata too, with
PostgreSQL for the files' bytes. Logs: build/cluster/.

The gateways read their other settings from this process's `EPITHRE_*` variables
(`EPITHRE_API_KEYS=k make cluster`).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ALL_COMPLETED, FIRST_EXCEPTION, ThreadPoolExecutor, wait
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, get_args

from model_repository import wire
from runner.gateway import LocalGateway
from runner.haproxy import SERVERS, LocalHaproxy
from runner.paths import DEFAULT_REPOSITORY
from runner.postgres import LocalPostgres
from runner.probe import answers_ok
from runner.prometheus import LocalPrometheus
from runner.redis import LocalRedis
from runner.repository import with_instances
from runner.supervisor import StartFailed, Supervisor
from runner.triton import LocalTriton, TritonPorts

TRITONS = ("triton-1", "triton-2")
# Two servers on the machine's cores: one instance of each tower each.
TOWER_INSTANCES = {wire.TEXT_ENCODER: 1, wire.IMAGE_ENCODER: 1}
# Longer than HAProxy takes to see a draining gateway's 503s (two checks 1 s apart): it is out
# of rotation before it stops accepting.
DRAIN_S = 4.0
SERVING_DEADLINE_S = 60.0
# Where the gateways keep the Files and Batch APIs' metadata: SQLite in their shared data dir, or
# the cluster's PostgreSQL.
Metadata = Literal["sqlite", "postgresql"]


class Startable(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...


def side_by_side(calls: Sequence[Callable[[], None]], *, fail_fast: bool) -> None:
    """Run `calls` in threads at once and wait for them all, or (`fail_fast`) until one raises;
    the first error, in the order of `calls`, is raised again.

    Threads still running then are not waited for, nor on Ctrl-C: stopping what they start is
    what ends them (`Supervisor.stop` ends a start in progress).
    """
    pool = ThreadPoolExecutor(max_workers=len(calls))
    try:
        futures = [pool.submit(call) for call in calls]
        wait(futures, return_when=FIRST_EXCEPTION if fail_fast else ALL_COMPLETED)
    finally:
        pool.shutdown(wait=False)
    for future in futures:
        if future.done() and (error := future.exception()) is not None:
            raise error


def start_layers(layers: Sequence[Sequence[Startable]]) -> None:
    """Start each layer's members side by side, a layer once the one before has started; on a
    failure (or Ctrl-C) stop every layer begun, the last first, and raise it again."""
    begun: list[Sequence[Startable]] = []
    try:
        for layer in layers:
            begun.append(layer)
            side_by_side([member.start for member in layer], fail_fast=True)
    except BaseException:
        stop_layers(begun)
        raise


def stop_layers(layers: Sequence[Sequence[Startable]]) -> None:
    """Stop the layers in the reverse of their order, each layer's members side by side. A stop
    that fails does not keep the others from stopping; the first error is raised at the end."""
    errors: list[Exception] = []
    for layer in reversed(layers):
        try:
            side_by_side([member.stop for member in layer], fail_fast=False)
        except Exception as error:
            errors.append(error)
    if errors:
        raise errors[0]


def free_ports(count: int) -> list[int]:
    """`count` different free ports: each is held until all are found."""
    with ExitStack() as held:
        sockets = [held.enter_context(socket.socket()) for _ in range(count)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]


@dataclass(frozen=True)
class GatewayPorts:
    http: int
    metrics: int


@dataclass(frozen=True)
class ClusterPorts:
    """The defaults are `make cluster`'s; `free()` picks free ones for tests."""

    haproxy: int = 8000
    prometheus: int = 9090
    # Not 6379 nor 5432: Debian's packages may run servers of their own there.
    redis: int = 6380
    postgres: int = 5433
    gateways: tuple[GatewayPorts, ...] = (GatewayPorts(8101, 9101), GatewayPorts(8102, 9102))
    tritons: tuple[TritonPorts, ...] = (
        TritonPorts(),
        TritonPorts(http=8020, grpc=8011, metrics=8012),
    )

    @classmethod
    def free(cls) -> ClusterPorts:
        ports = iter(free_ports(4 + 2 * len(SERVERS) + 3 * len(TRITONS)))
        return cls(
            haproxy=next(ports),
            prometheus=next(ports),
            redis=next(ports),
            postgres=next(ports),
            gateways=tuple(GatewayPorts(next(ports), next(ports)) for _ in SERVERS),
            tritons=tuple(TritonPorts(next(ports), next(ports), next(ports)) for _ in TRITONS),
        )


@dataclass(frozen=True)
class Cluster:
    """The supervised processes of the cluster; each supervisor's `child` has the addresses.

    Handles for tests (all supervisors: `.pid` of the current process, `.wait_replaced(pid,
    deadline_s=...)` for the restarted one's, `.child` for its ports and URLs):
        cluster.url                      HAProxy, the API as clients see it
        cluster.prometheus_url           Prometheus (jobs `gateway` and `triton`)
        cluster.tritons[i].child         LocalTriton: .ports (http, grpc, metrics), .metrics_url
        cluster.gateways[i].child        LocalGateway: .base_url, .metrics_url, .port
        cluster.haproxy.child            LocalHaproxy: .server_states(), .command("show stat")
        cluster.redis.child              LocalRedis: .url (both gateways' rate-limit storage)
        cluster.postgres.child           LocalPostgres: .url (both gateways' database), or
                                         cluster.postgres None on SQLite
        cluster.wait_serving()           until both gateways are ready and in HAProxy's rotation
    Usage:
        with running_cluster(tmp_path) as cluster:
            os.kill(cluster.tritons[0].pid, signal.SIGKILL)
    """

    tritons: tuple[Supervisor[LocalTriton], ...]
    gateways: tuple[Supervisor[LocalGateway], ...]
    haproxy: Supervisor[LocalHaproxy]
    prometheus: Supervisor[LocalPrometheus]
    redis: Supervisor[LocalRedis]
    postgres: Supervisor[LocalPostgres] | None = None

    @property
    def url(self) -> str:
        return self.haproxy.child.url

    @property
    def prometheus_url(self) -> str:
        return self.prometheus.child.url

    @property
    def layers(self) -> list[Sequence[Supervisor]]:
        """The order of the start; the stop goes the other way."""
        backends = (self.redis, self.prometheus, *self.tritons)
        if self.postgres is not None:
            backends += (self.postgres,)
        return [backends, self.gateways, (self.haproxy,)]

    @classmethod
    def build(
        cls,
        workdir: Path,
        *,
        repository: Path,
        ports: ClusterPorts,
        gateway_settings: Mapping[str, str],
        database: Metadata = "sqlite",
    ) -> Cluster:
        """The cluster's processes, none started; `workdir` gets the repository and the logs.

        The gateways count rate limits in the cluster's Redis unless `gateway_settings` says
        otherwise (EPITHRE_RATE_LIMIT_STORAGE); `database` "postgresql" adds a PostgreSQL
        (its data in `workdir`/postgres) that both keep their metadata in, unless
        `gateway_settings` name another (EPITHRE_DATABASE_URL).
        """
        served = with_instances(repository, workdir / "repository", TOWER_INSTANCES)
        tritons = tuple(
            Supervisor(
                LocalTriton(
                    served,
                    ports=triton_ports,
                    workdir=workdir / name,
                    log_path=workdir / name / "tritonserver.log",
                ),
                name=name,
            )
            for name, triton_ports in zip(TRITONS, ports.tritons, strict=True)
        )
        # One target, every Triton: the gateway's channel balances over the addresses itself.
        targets = "ipv4:" + ",".join(t.child.grpc_url for t in tritons)
        redis = LocalRedis(port=ports.redis, workdir=workdir / "redis")
        shared = {"EPITHRE_RATE_LIMIT_STORAGE": redis.url}
        postgres = None
        if database == "postgresql":
            postgres = LocalPostgres(port=ports.postgres, workdir=workdir / "postgres")
            shared["EPITHRE_DATABASE_URL"] = postgres.url
        shared |= gateway_settings
        gateways = tuple(
            Supervisor(
                LocalGateway(
                    targets,
                    port=gateway_ports.http,
                    metrics_port=gateway_ports.metrics,
                    settings=shared,
                    log_path=workdir / f"{name}.log",
                ),
                name=name,
            )
            for name, gateway_ports in zip(SERVERS, ports.gateways, strict=True)
        )
        haproxy = LocalHaproxy(
            port=ports.haproxy,
            gateways=[f"127.0.0.1:{g.child.port}" for g in gateways],
            workdir=workdir,
        )
        prometheus = LocalPrometheus(
            {
                "gateway": [f"127.0.0.1:{g.child.metrics_port}" for g in gateways],
                "triton": [f"127.0.0.1:{t.child.ports.metrics}" for t in tritons],
            },
            port=ports.prometheus,
            workdir=workdir / "prometheus",
        )
        return cls(
            tritons=tritons,
            gateways=gateways,
            haproxy=Supervisor(haproxy, name="haproxy"),
            prometheus=Supervisor(prometheus, name="prometheus"),
            redis=Supervisor(redis, name="redis"),
            postgres=None if postgres is None else Supervisor(postgres, name="postgres"),
        )

    def start(self) -> None:
        """Start every process; StartFailed (nothing left running) if one never gets ready."""
        start_layers(self.layers)

    def wait_serving(self, *, deadline_s: float = SERVING_DEADLINE_S) -> None:
        """Wait until every gateway is ready and HAProxy's checks have them all in rotation (also
        while one restarts: its port stays); TimeoutError at the deadline."""
        until = time.monotonic() + deadline_s
        while not self._serving():
            if time.monotonic() > until:
                raise TimeoutError(f"not serving after {deadline_s} s: {self._states()}")
            time.sleep(0.2)

    def _serving(self) -> bool:
        return all(answers_ok(g.child.ready_url) for g in self.gateways) and self._states() == (
            dict.fromkeys(SERVERS, "UP")
        )

    def _states(self) -> dict[str, str]:
        """HAProxy's view of the gateways; empty while it is not there to ask."""
        try:
            return self.haproxy.child.server_states()
        except OSError:
            return {}

    def stop(self) -> None:
        stop_layers(self.layers)


@contextmanager
def running_cluster(
    workdir: Path,
    *,
    repository: Path = DEFAULT_REPOSITORY,
    ports: ClusterPorts | None = None,
    database: Metadata = "sqlite",
    **gateway_settings: str,
) -> Iterator[Cluster]:
    """The cluster on free ports (unless `ports`), serving through HAProxy; stopped at the end.

    `gateway_settings`: `EPITHRE_*` variables for both gateways (EPITHRE_DRAIN_S is DRAIN_S and
    EPITHRE_RATE_LIMIT_STORAGE the cluster's Redis unless given). `database`: see
    `Cluster.build`. See `Cluster` for the handles.
    """
    cluster = Cluster.build(
        workdir,
        repository=repository,
        ports=ports or ClusterPorts.free(),
        gateway_settings={"EPITHRE_DRAIN_S": str(DRAIN_S), **gateway_settings},
        database=database,
    )
    cluster.start()
    try:
        cluster.wait_serving()
        yield cluster
    finally:
        cluster.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m runner.cluster",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    defaults = ClusterPorts()
    parser.add_argument("--model-repository", type=Path, default=DEFAULT_REPOSITORY)
    parser.add_argument("--workdir", type=Path, default=Path("build/cluster"), help="logs")
    parser.add_argument("--haproxy-port", type=int, default=defaults.haproxy)
    parser.add_argument("--prometheus-port", type=int, default=defaults.prometheus)
    parser.add_argument(
        "--database",
        choices=get_args(Metadata),
        default="sqlite",
        help="where the gateways keep the Files and Batch APIs' metadata",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # SIGTERM takes the same path as Ctrl-C so both stop everything cleanly.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    cluster = Cluster.build(
        args.workdir.resolve(),
        repository=args.model_repository,
        ports=ClusterPorts(haproxy=args.haproxy_port, prometheus=args.prometheus_port),
        gateway_settings={"EPITHRE_DRAIN_S": os.environ.get("EPITHRE_DRAIN_S", str(DRAIN_S))},
        database=args.database,
    )
    print(f"starting (logs: {args.workdir})", file=sys.stderr, flush=True)
    try:
        cluster.start()
        cluster.wait_serving()
        metadata = "SQLite" if cluster.postgres is None else cluster.postgres.child.url
        print(
            f"serving on {cluster.url}, Prometheus on {cluster.prometheus_url}, "
            f"rate limits in {cluster.redis.child.url}, metadata in {metadata}",
            file=sys.stderr,
            flush=True,
        )
        signal.pause()
    except (StartFailed, TimeoutError) as error:
        print(f"{error} (logs: {args.workdir})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
