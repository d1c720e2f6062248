"""The gateway's one gRPC channel to its Tritons: options, round_robin, its client, and reopening.

`EPITHRE_TRITON_URL` is any gRPC target: `host:port`, a static list such as
`ipv4:127.0.0.1:8001,127.0.0.1:8011`, or `dns:///triton-headless:8001`. gRPC's own `round_robin`
policy spreads calls over every address of the target that is connected; an address whose
connection fails leaves the rotation at once and rejoins when it reconnects.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any, Protocol

import grpc
from google.protobuf import json_format
from tritonclient.grpc import MAX_GRPC_MESSAGE_SIZE, service_pb2, service_pb2_grpc

from model_repository import wire

logger = logging.getLogger("gateway")

# A new channel must reach a ready Triton within this before it replaces the old one.
WARM_UP_TIMEOUT_S = 5.0

# tritonclient's own channel options (its message size limits), plus the keepalive of
# wire.py: a ping every second, calls in flight or not, and a connection whose ping is not
# answered within a second given up, so a stopped or vanished Triton fails the calls in flight
# in about two seconds (and leaves the rotation). Reconnects back off at most a second: a Triton
# back after a minute is used at once. No gRPC retry policy: Triton answers overload UNAVAILABLE
# too, so only the gateway, which tells the two apart, retries (gateway/triton.py).
CHANNEL_ARGS = (
    ("grpc.max_send_message_length", MAX_GRPC_MESSAGE_SIZE),
    ("grpc.max_receive_message_length", MAX_GRPC_MESSAGE_SIZE),
    ("grpc.keepalive_time_ms", wire.KEEPALIVE_TIME_MS),
    ("grpc.keepalive_timeout_ms", wire.KEEPALIVE_TIMEOUT_MS),
    ("grpc.http2.ping_timeout_ms", wire.KEEPALIVE_TIMEOUT_MS),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.max_reconnect_backoff_ms", 1_000),
    ("grpc.service_config", json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})),
)


class TritonClient:
    """The calls the gateway makes to Triton's gRPC service, straight through its stub.

    tritonclient's client, `InferInput` and `InferResult` add CPU time to every call, so requests
    are built and answers read as protobuf messages by the caller
    (`gateway.triton.TritonEmbedder`), and a failure is the stub's own `grpc.aio.AioRpcError`.
    Usage: `ready = await client("127.0.0.1:8001").is_server_ready(timeout_s=5)`
    """

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._channel = channel
        self._stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)

    async def infer(
        self, request: service_pb2.ModelInferRequest, *, timeout_s: float
    ) -> service_pb2.ModelInferResponse:
        return await self._stub.ModelInfer(request, timeout=timeout_s)

    async def model_config(self, model: str, *, timeout_s: float) -> dict[str, Any]:
        """The config Triton loaded for `model`, as JSON: `{"config": {"name": ..., ...}}`, field
        names as the proto spells them (tritonclient's `get_model_config(as_json=True)`)."""
        response = await self._stub.ModelConfig(
            service_pb2.ModelConfigRequest(name=model), timeout=timeout_s
        )
        return json_format.MessageToDict(response, preserving_proto_field_name=True)

    async def is_server_ready(self, *, timeout_s: float) -> bool:
        response = await self._stub.ServerReady(service_pb2.ServerReadyRequest(), timeout=timeout_s)
        return response.ready

    async def close(self) -> None:
        await self._channel.close()


def client(target: str) -> TritonClient:
    """A client of Triton on a new channel with CHANNEL_ARGS (one per event loop)."""
    return TritonClient(grpc.aio.insecure_channel(target, options=CHANNEL_ARGS))


class Reconnectable(Protocol):
    """What `reopen_every` swaps the client of: `gateway.triton.TritonEmbedder` is one."""

    def swap_client(self, new: TritonClient) -> TritonClient:
        """Send later calls through `new`; return the client used until now."""
        ...


async def reopen_every(
    embedder: Reconnectable,
    *,
    target: str,
    interval_s: float,
    grace_s: float,
    factory: Callable[[str], TritonClient] = client,
) -> None:
    """Every `interval_s`, open a new channel to `target` and move the calls onto it.

    gRPC resolves a DNS name again only after a connection fails, and Triton never ends a
    connection by age: without this, Tritons added by a scale-up would get no traffic from a
    gateway that started before them. An old channel is closed at the first reopening at least
    `grace_s` later, once the calls still on it have had their whole deadline; a new channel that
    reaches no ready Triton is dropped and the old one kept. Runs until cancelled.
    """
    loop = asyncio.get_running_loop()
    retired: list[tuple[float, TritonClient]] = []  # (when to close, client)
    try:
        while True:
            await asyncio.sleep(interval_s)
            while retired and retired[0][0] <= loop.time():
                await retired.pop(0)[1].close()
            new = factory(target)
            try:
                ready = await new.is_server_ready(timeout_s=WARM_UP_TIMEOUT_S)
            except grpc.aio.AioRpcError as exc:
                ready = False
                logger.warning("reopening the channel to %s failed: %s", target, exc.details())
            if not ready:
                await new.close()
                continue
            retired.append((loop.time() + grace_s, embedder.swap_client(new)))
    finally:
        for _, old in retired:
            await old.close()
