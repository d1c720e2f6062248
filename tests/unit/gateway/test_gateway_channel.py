from __future__ import annotations

import asyncio
import json

import grpc
from gateway_fakes import grpc_error
from tritonclient.grpc import model_config_pb2, service_pb2, service_pb2_grpc

from gateway.channel import CHANNEL_ARGS, client, reopen_every


def test_the_channel_keeps_tritonclient_s_message_sizes_and_adds_a_fast_keepalive():
    options = dict(CHANNEL_ARGS)
    assert options["grpc.max_send_message_length"] == 2**31 - 1
    assert options["grpc.max_receive_message_length"] == 2**31 - 1
    # grpcio waits for a ping's ack for http2.ping_timeout_ms, not keepalive_timeout_ms.
    assert options["grpc.http2.ping_timeout_ms"] == options["grpc.keepalive_timeout_ms"] == 1000
    assert (options["grpc.keepalive_time_ms"], options["grpc.keepalive_permit_without_calls"]) == (
        1000,
        1,
    )


def test_the_channel_balances_round_robin_with_no_grpc_retry_policy():
    config = json.loads(dict(CHANNEL_ARGS)["grpc.service_config"])
    assert config == {"loadBalancingConfig": [{"round_robin": {}}]}


class CountingTriton(service_pb2_grpc.GRPCInferenceServiceServicer):
    def __init__(self) -> None:
        self.calls = 0

    async def ServerReady(self, request, context):
        self.calls += 1
        return service_pb2.ServerReadyResponse(ready=True)

    async def ModelConfig(self, request, context):
        config = model_config_pb2.ModelConfig(
            name=request.name,
            max_batch_size=64,
            instance_group=[
                model_config_pb2.ModelInstanceGroup(
                    count=2, kind=model_config_pb2.ModelInstanceGroup.KIND_CPU
                )
            ],
            parameters={"max_tokens": model_config_pb2.ModelParameter(string_value="256")},
        )
        return service_pb2.ModelConfigResponse(config=config)


async def _serve(servicer: CountingTriton) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server()
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port


def test_a_target_list_spreads_calls_over_every_server_and_skips_a_stopped_one():
    async def scenario() -> tuple[list[int], list[int]]:
        tritons = [CountingTriton(), CountingTriton()]
        (first, port1), (second, port2) = [await _serve(t) for t in tritons]
        triton = client(f"ipv4:127.0.0.1:{port1},127.0.0.1:{port2}")
        try:
            # Calls go to whichever server is connected: both are, once both have answered.
            while not all(t.calls for t in tritons):
                assert await triton.is_server_ready(timeout_s=5)
            for t in tritons:
                t.calls = 0
            for _ in range(20):
                assert await triton.is_server_ready(timeout_s=5)
            spread = [t.calls for t in tritons]
            await first.stop(grace=None)
            for _ in range(10):
                assert await triton.is_server_ready(timeout_s=5)
            return spread, [t.calls for t in tritons]
        finally:
            await triton.close()
            await second.stop(grace=None)

    spread, after = asyncio.run(scenario())
    assert spread == [10, 10]
    assert after[1] == 20


def test_a_model_config_reads_as_tritonclient_s_json_with_the_proto_s_field_names():
    async def scenario() -> dict:
        server, port = await _serve(CountingTriton())
        triton = client(f"127.0.0.1:{port}")
        try:
            return await triton.model_config("text_encoder", timeout_s=5)
        finally:
            await triton.close()
            await server.stop(grace=None)

    assert asyncio.run(scenario()) == {
        "config": {
            "name": "text_encoder",
            "max_batch_size": 64,
            "instance_group": [{"count": 2, "kind": "KIND_CPU"}],
            "parameters": {"max_tokens": {"string_value": "256"}},
        }
    }


class FakeClient:
    def __init__(self, name: str, *, ready: bool = True) -> None:
        self.name, self.ready, self.closed = name, ready, False

    async def is_server_ready(self, *, timeout_s: float) -> bool:
        if not self.ready:
            raise grpc_error(grpc.StatusCode.UNAVAILABLE, "refused")
        return True

    async def close(self) -> None:
        self.closed = True


class FakeEmbedder:
    def __init__(self, first: FakeClient) -> None:
        self.first = self.current = first

    def swap_client(self, new: FakeClient) -> FakeClient:
        old, self.current = self.current, new
        return old


def _reopen(embedder: FakeEmbedder, *, channels: int, grace_s: float) -> list[tuple[str, bool]]:
    """Run `reopen_every` until the embedder uses the `channels`-th new channel (the second one
    made reaches no ready Triton); return each channel's (name, closed) at that moment."""
    made: list[FakeClient] = []

    def factory(target: str) -> FakeClient:
        made.append(FakeClient(f"#{len(made)}", ready=len(made) != 1))
        return made[-1]

    async def scenario() -> list[tuple[str, bool]]:
        task = asyncio.create_task(
            reopen_every(
                embedder,  # type: ignore[arg-type]
                target="dns:///triton:8001",
                interval_s=0.01,
                grace_s=grace_s,
                factory=factory,  # type: ignore[arg-type]
            )
        )
        while len(made) < channels or embedder.current is not made[channels - 1]:
            await asyncio.sleep(0.001)
        seen = [(c.name, c.closed) for c in (embedder.first, *made)]
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return seen

    return asyncio.run(scenario())


def test_reopening_moves_calls_to_a_new_channel_and_closes_the_old_one_after_the_grace():
    embedder = FakeEmbedder(FakeClient("first"))
    # Ticks: #0 replaces first; first closed, #1 unready and dropped; #2 replaces #0;
    # #0 closed, #3 replaces #2.
    assert _reopen(embedder, channels=4, grace_s=0.0) == [
        ("first", True),
        ("#0", True),
        ("#1", True),
        ("#2", False),
        ("#3", False),
    ]


def test_an_old_channel_stays_open_for_its_calls_until_the_grace_has_passed():
    embedder = FakeEmbedder(FakeClient("first"))
    assert _reopen(embedder, channels=3, grace_s=60.0) == [
        ("first", False),
        ("#0", False),
        ("#1", True),
        ("#2", False),
    ]
    assert embedder.first.closed  # closed when the gateway stops
