"""Gateway settings, read once from `EPITHRE_*` environment variables."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from model_repository import wire

PREFIX = "EPITHRE_"
MIB = 1024 * 1024
# EPITHRE_RATE_LIMIT_STORAGE for this replica's memory; any other value is a Redis URL.
MEMORY = "memory://"
REDIS_SCHEMES = ("redis", "rediss", "unix")
# libpq takes both spellings.
POSTGRES_SCHEMES = ("postgresql", "postgres")


class SettingsError(ValueError):
    """An environment variable holds a value its setting cannot take."""


@dataclass(frozen=True)
class Settings:
    """Everything the gateway can be told from outside; model facts come from Triton instead
    (among them the pixel cap per image and the text tower's instances, which set how many
    Triton requests a request's texts go as).

    Rate limits (EPITHRE_RATE_LIMIT_RPM, EPITHRE_RATE_LIMIT_TPM) are counted in each gateway
    replica's memory by default: with N replicas behind a load balancer a key may get up to N
    times its limit. EPITHRE_RATE_LIMIT_STORAGE=redis://... keeps them in one Redis that every
    replica shares, so a key gets its limit across all of them.

    Usage: `Settings.from_env()` or `Settings(api_keys=("k",))` in tests.
    """

    # EPITHRE_TRITON_URL: Triton's gRPC endpoints as any gRPC target: host:port, a list such as
    # ipv4:10.0.0.1:8001,10.0.0.2:8001, or dns:///triton-headless:8001; calls go round-robin
    # over the connected ones.
    triton_url: str = "127.0.0.1:8001"
    # EPITHRE_TRITON_REOPEN_S: seconds between reopenings of the channel, which resolve a DNS
    # target again, so that Tritons added by a scale-up get traffic; 0 = never.
    triton_reopen_s: float = 60.0
    # EPITHRE_HOST: address uvicorn binds to.
    host: str = "127.0.0.1"
    # EPITHRE_PORT: port uvicorn listens on.
    port: int = 8000
    # EPITHRE_METRICS_PORT: serve /metrics on this port of EPITHRE_HOST only, and not on the
    # public port, so that a load balancer publishing the API does not publish request counts;
    # 0 = /metrics on the public port.
    metrics_port: int = 0
    # EPITHRE_MAX_BODY_BYTES: request body cap (413 above); the contract says 25 MB.
    max_body_bytes: int = 25 * MIB
    # EPITHRE_BODY_TIMEOUT_S: a request body must be complete within this many seconds (408
    # and the connection closed otherwise).
    body_timeout_s: float = 30.0
    # EPITHRE_MIN_BODY_BYTES_PER_S: after its first 5 seconds, a request body must arrive at least
    # this fast on average (408 and the connection closed otherwise): 10 kB/s sends 25 MB in
    # 40 min; anything slower holds a connection and a buffer for nothing.
    min_body_bytes_per_s: float = 10_000.0
    # EPITHRE_MAX_CONCURRENT_REQUESTS: requests one gateway process serves at once; beyond it,
    # 503 with the API's JSON error and Retry-After (health checks and metrics are exempt).
    max_concurrent_requests: int = 512
    # EPITHRE_MAX_IMAGE_BYTES: decoded size cap per image (413 naming the item above).
    max_image_bytes: int = 20 * MIB
    # EPITHRE_MAX_TEXT_ITEMS: text items per request (400 above); Triton's max_batch_size is 64.
    max_text_items: int = 64
    # EPITHRE_MAX_IMAGE_ITEMS: image items per request (400 above).
    max_image_items: int = 8
    # EPITHRE_MAX_TEXT_CHARS: per-text character cap applied by `truncate` (END/START/NONE).
    max_text_chars: int = 10_000
    # EPITHRE_MAX_INSTRUCTION_CHARS: instruction length cap (400 above).
    max_instruction_chars: int = 2_000
    # EPITHRE_REQUEST_TIMEOUT_S: deadline of a request's Triton calls, also sent as Triton's
    # queue timeout (504 when it passes; admission control keeps that rare).
    request_timeout_s: float = 30.0
    # EPITHRE_ADMIT_WAIT_FRACTION: a request is admitted while its estimated wait (the work in
    # flight over the measured rate) is at most this fraction of its deadline; 429 above.
    admit_wait_fraction: float = 0.8
    # EPITHRE_FAIR_SHARE_WAIT_FRACTION: past this fraction of the deadline, a caller holding more
    # than its share of the work in flight is refused first, so that light callers are served.
    fair_share_wait_fraction: float = 0.5
    # EPITHRE_BREAKER_FAILURES: consecutive transport failures or timeouts that open the circuit
    # (503 with Retry-After at once, until a probe embedding succeeds).
    breaker_failures: int = 2
    # EPITHRE_BREAKER_PROBE_S: seconds between probes while the circuit is open.
    breaker_probe_s: float = 1.0
    # EPITHRE_STARTUP_TIMEOUT_S: how long start-up keeps retrying Triton for the model facts.
    startup_timeout_s: float = 120.0
    # EPITHRE_DRAIN_S: after SIGTERM, seconds of answering 503 on /health/ready while still
    # serving, so load balancers stop routing here before uvicorn stops accepting; 0 = none.
    drain_s: float = 0.0
    # EPITHRE_KEEP_ALIVE_S: how long an idle client connection stays open. Longer than the
    # idle timeout of the load balancer or client pool in front (AWS ALB 60 s, httpx 5 s), so
    # that the client always closes first and never sends on a connection being closed.
    keep_alive_s: float = 75.0
    # EPITHRE_API_KEYS: comma-separated bearer keys; empty turns authentication off.
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    # EPITHRE_API_KEYS_FILE: a file of bearer keys, one a line, `#` comments and blank lines
    # ignored; merged into api_keys by from_env (a file keeps keys out of the process listing).
    api_keys_file: str | None = None
    # EPITHRE_RATE_LIMIT_RPM: requests per minute per API key (one shared anonymous budget
    # when no keys are configured), per replica unless stored in Redis; 429 with Retry-After
    # above; 0 = off.
    rate_limit_rpm: int = 0
    # EPITHRE_RATE_LIMIT_TPM: tokens per minute per API key (usage.total_tokens, charged after
    # the answer, so an overdraft refuses the key's next request), per replica unless stored in
    # Redis; 0 = off.
    rate_limit_tpm: int = 0
    # EPITHRE_RATE_LIMIT_STORAGE: where the rate limits are counted: memory:// (this replica) or
    # redis://host:port/db (also rediss://, unix://), one budget per key shared by all replicas.
    # Redis unreachable (no answer in 250 ms): requests are admitted without limits and without
    # x-ratelimit-* headers, with a warning and epithre_rate_limit_storage_up 0, until it answers.
    rate_limit_storage: str = MEMORY
    # EPITHRE_DATA_DIR: where the gateway keeps what outlives it: the SQLite database and the
    # files' bytes (files/). Relative to the working directory: `make serve` uses data/ in the
    # checkout; gateways that share it (one machine, or one volume) share the files.
    data_dir: str = "data"
    # EPITHRE_DATABASE_URL: postgresql://user:password@host:port/db keeps the Files and Batch
    # APIs' metadata in PostgreSQL instead of SQLite in the data dir, so that replicas on several
    # machines share the batches' work (their data dir then one volume they all mount). Unset:
    # SQLite. Never logged: it may hold a password.
    database_url: str | None = field(default=None, repr=False)
    # EPITHRE_MAX_FILE_BYTES: cap of one uploaded file (413 as soon as the stream passes it).
    max_file_bytes: int = 200 * MIB
    # EPITHRE_MIN_UPLOAD_BYTES_PER_S: after its first 5 seconds, a file upload must arrive at
    # least this fast on average (408 and the connection closed otherwise): 200 MB in 35 min.
    min_upload_bytes_per_s: float = 100_000.0
    # EPITHRE_FILE_QUOTA_BYTES: bytes of files each API key may store (uploads over it get 413;
    # batch results are counted but never refused); 0 = no quota.
    file_quota_bytes: int = 10 * 1024 * MIB
    # EPITHRE_BATCH_FILE_EXPIRY_S: seconds a batch input file is kept when its upload sets no
    # expires_after (OpenAI's 30 days); 0 = until deleted.
    batch_file_expiry_s: int = 30 * 24 * 3600
    # EPITHRE_BATCH_WORKER: run batches in this gateway process (true); false on a replica that
    # should only serve (the batches it accepts run on the replicas sharing its data dir).
    batch_worker: bool = True
    # EPITHRE_BATCH_CHUNK_LINES: input lines per chunk, the unit a worker takes, checkpoints and,
    # after a crash, runs again.
    batch_chunk_lines: int = 100
    # EPITHRE_BATCH_MAX_IN_FLIGHT: batch lines a worker has in the model at once while no
    # realtime request comes (see below); it also backs off whenever admission control reports
    # load.
    batch_max_in_flight: int = 16
    # EPITHRE_BATCH_IN_FLIGHT_BESIDE_REALTIME: batch lines a worker has in the model at once
    # while realtime requests come (one in flight, or one ended within
    # EPITHRE_BATCH_REALTIME_QUIET_S), so that they wait for little batch work in the towers
    # (docs/tuning.md).
    batch_in_flight_beside_realtime: int = 1
    # EPITHRE_BATCH_REALTIME_QUIET_S: seconds after the last realtime request at which batch
    # work takes the model back (EPITHRE_BATCH_MAX_IN_FLIGHT lines).
    batch_realtime_quiet_s: float = 10.0
    # EPITHRE_BATCH_LEASE_S: a worker renews its hold on a chunk or a batch every third of this;
    # work held by a worker that died is taken again this long after its last renewal.
    batch_lease_s: float = 30.0
    # EPITHRE_BATCH_COMPLETION_WINDOW_S: seconds a batch has (its completion_window, "24h");
    # lines not done by then go to the error file as batch_expired.
    batch_completion_window_s: float = 24 * 3600.0
    # EPITHRE_BATCH_TOKEN_BUDGET: estimated tokens (characters / 4) each API key may have queued
    # in batches in progress; a batch that would pass it fails with token_limit_exceeded. Apart
    # from the realtime tokens per minute. 0 = no budget.
    batch_token_budget: int = 50_000_000
    # EPITHRE_ENSEMBLE: name of the Triton ensemble that embeds texts.
    ensemble: str = wire.ENSEMBLE_TEXT
    # EPITHRE_IMAGE_ENSEMBLE: name of the Triton ensemble that embeds images.
    image_ensemble: str = wire.ENSEMBLE_IMAGE

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        """Build settings from `environ`; unset variables keep their defaults."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            name = PREFIX + f.name.upper()
            if name in environ:
                values[f.name] = _cast(name, environ[name], _CASTS[f.name], secret=not f.repr)
        if values.get("api_keys_file"):
            from_file = _keys_file(values["api_keys_file"])
            # dict.fromkeys drops a key given twice while keeping the order they were given in.
            values["api_keys"] = tuple(dict.fromkeys((*values.get("api_keys", ()), *from_file)))
        return cls(**values)


def _keys(raw: str) -> tuple[str, ...]:
    return tuple(key.strip() for key in raw.split(",") if key.strip())


def _keys_file(path: str) -> tuple[str, ...]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        # The path is named but never the file's contents, which are secrets.
        raise SettingsError(f"{PREFIX}API_KEYS_FILE={path!r}: {type(exc).__name__}") from None
    lines = (line.strip() for line in text.splitlines())
    return tuple(line for line in lines if line and not line.startswith("#"))


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value not in ("true", "false", "1", "0"):
        raise ValueError("must be true or false")
    return value in ("true", "1")


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError("must be positive")
    return value


def _non_negative_int(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError("must be zero or positive")
    return value


def _positive_float(raw: str) -> float:
    value = float(raw)
    if not value > 0:
        raise ValueError("must be positive")
    return value


def _non_negative_float(raw: str) -> float:
    value = float(raw)
    if not value >= 0:
        raise ValueError("must be zero or positive")
    return value


def _storage_url(raw: str) -> str:
    parts = urlsplit(raw)
    if raw != MEMORY and parts.scheme not in REDIS_SCHEMES:
        raise ValueError("must be memory:// or a redis://, rediss:// or unix:// URL")
    # urlsplit reads the port only when asked: one that is not a number raises ValueError here.
    _ = parts.port
    return raw


def _database_url(raw: str) -> str:
    if urlsplit(raw).scheme not in POSTGRES_SCHEMES:
        raise ValueError("must be a postgresql:// URL")
    return raw


def _fraction(raw: str) -> float:
    value = float(raw)
    if not 0 < value <= 1:
        raise ValueError("must be above 0 and at most 1")
    return value


_CASTS: dict[str, Callable[[str], Any]] = {
    "triton_url": str,
    "triton_reopen_s": _non_negative_float,
    "host": str,
    "port": int,
    "metrics_port": _non_negative_int,
    "max_body_bytes": _positive_int,
    "max_image_bytes": _positive_int,
    "body_timeout_s": _positive_float,
    "min_body_bytes_per_s": _positive_float,
    "max_concurrent_requests": _positive_int,
    "max_text_items": _positive_int,
    "max_image_items": _positive_int,
    "max_text_chars": _positive_int,
    "max_instruction_chars": _positive_int,
    "request_timeout_s": _positive_float,
    "admit_wait_fraction": _fraction,
    "fair_share_wait_fraction": _fraction,
    "breaker_failures": _positive_int,
    "breaker_probe_s": _positive_float,
    "startup_timeout_s": _positive_float,
    "drain_s": _non_negative_float,
    "keep_alive_s": _positive_float,
    "api_keys": _keys,
    "api_keys_file": str,
    "rate_limit_rpm": _non_negative_int,
    "rate_limit_tpm": _non_negative_int,
    "rate_limit_storage": _storage_url,
    "data_dir": str,
    "database_url": _database_url,
    "max_file_bytes": _positive_int,
    "min_upload_bytes_per_s": _positive_float,
    "file_quota_bytes": _non_negative_int,
    "batch_file_expiry_s": _non_negative_int,
    "batch_worker": _bool,
    "batch_chunk_lines": _positive_int,
    "batch_max_in_flight": _positive_int,
    "batch_in_flight_beside_realtime": _positive_int,
    "batch_realtime_quiet_s": _positive_float,
    "batch_lease_s": _positive_float,
    "batch_completion_window_s": _positive_float,
    "batch_token_budget": _non_negative_int,
    "ensemble": str,
    "image_ensemble": str,
}


def _cast(name: str, raw: str, cast: Callable[[str], Any], *, secret: bool) -> Any:
    try:
        return cast(raw)
    except ValueError as exc:
        # A secret's value (a key, a URL with a password) is never repeated in an error.
        raise SettingsError(f"{name}{'' if secret else f'={raw!r}'}: {exc}") from None
