"""The embedding service: fan-out by tower instance, reassembly in input order, usage."""

from __future__ import annotations

import asyncio
import base64

import numpy as np
import pytest
from gateway_fakes import FACTS, MULTIMODAL, FakeClock, FakeEmbedder

from gateway.admission import Admission
from gateway.breaker import CircuitBreaker
from gateway.embedder import EmbedOptions, ImageEmbedding, TextEmbeddings
from gateway.errors import BackendUnavailable, ImageRejected, TokenLimitExceeded
from gateway.metrics import Metrics
from gateway.protocol import Limits
from gateway.service import EmbeddingService, length_groups
from gateway.settings import Settings
from gateway.validation import parse_request, request_type
from model_repository import wire

PNG = b"\x89PNG\r\n\x1a\n"


class LengthEmbedder:
    """Each text's vector holds its length; 3 tokens per character; texts over 6 characters are
    over the token limit (with NONE) or cut (otherwise); images named in `bad_images` fail."""

    def __init__(self, bad_images: tuple[bytes, ...] = ()) -> None:
        self.text_calls: list[list[str]] = []
        self.bad_images = bad_images

    async def embed_texts(self, texts, options: EmbedOptions) -> TextEmbeddings:
        self.text_calls.append(list(texts))
        await asyncio.sleep(0.001 * len(self.text_calls))  # later parts answer later
        long = [i for i, t in enumerate(texts) if len(t) > 6]
        if long and options.truncate == "NONE":
            raise TokenLimitExceeded(item=long[0], tokens=99, limit=20)
        return TextEmbeddings(
            vectors=np.array([[len(t)] * options.dimensions for t in texts], dtype=np.float32),
            tokens=np.array([3 * len(t) for t in texts]),
            truncated=np.array([len(t) > 6 for t in texts]),
            build="b1",
        )

    async def probe(self) -> None:
        pass

    async def embed_image(self, image: bytes, options: EmbedOptions) -> ImageEmbedding:
        if image in self.bad_images:
            raise ImageRejected("cannot identify image file", item=0)
        vector = np.full(options.dimensions, -1.0, dtype=np.float32)
        return ImageEmbedding(vector=vector, build="b1")


def request(*items, facts=MULTIMODAL, **fields):
    limits = Limits.of(Settings(max_text_chars=9), facts)
    payload = {"model": "epithre-embed", "input": list(items), "dimensions": 2, **fields}
    return parse_request(payload, request_type(limits))


def image(data: bytes) -> dict:
    return {"type": "image", "image": base64.b64encode(data).decode()}


def service(embedder, *, text_parts: int, deadline_s: float = 30.0) -> EmbeddingService:
    return EmbeddingService(
        embedder,
        text_parts=text_parts,
        max_tokens=256,
        deadline_s=deadline_s,
        admission=Admission(admit_fraction=0.8, fair_fraction=0.5),
        breaker=CircuitBreaker(embedder.probe, threshold=2, probe_interval_s=60),
        metrics=Metrics(),
    )


def embed(service: EmbeddingService, body, caller: bytes = b"k", **options):
    async def run():
        try:
            return await service.embed(body, caller=caller, **options)
        finally:
            await service.breaker.close()

    return asyncio.run(run())


@pytest.fixture(autouse=True)
def _header_only_images(monkeypatch):
    # The image checks are tested elsewhere; here any bytes are an image.
    monkeypatch.setattr(
        "gateway.validation.decode_image", lambda item, **_: base64.b64decode(item["image"])
    )


def test_texts_are_dealt_by_length_into_one_part_per_tower_instance():
    assert length_groups(["aaaa", "b", "cccccc", "dd"], 2) == [[0, 1], [2, 3]]
    assert length_groups(["aaaa", "b"], 4) == [[1], [0]]
    assert length_groups(["a", "b", "c"], 1) == [[0, 1, 2]]


def test_rows_come_back_in_input_order_whatever_part_computed_them():
    embedder = LengthEmbedder()
    result = embed(service(embedder, text_parts=2), request("aaaa", "b", "cccccc", "dd"))
    assert sorted(embedder.text_calls) == [["aaaa", "b"], ["cccccc", "dd"]]
    assert result.vectors[:, 0].tolist() == [4, 1, 6, 2]


def test_images_and_texts_keep_their_positions():
    embedder = LengthEmbedder()
    body = request("aa", image(b"x"), "bbb", image(b"y"))
    result = embed(service(embedder, text_parts=2), body)
    assert result.vectors[:, 0].tolist() == [2, -1, 3, -1]
    assert result.types == ["text", "image", "text", "image"]
    assert result.image_count == 2


def test_usage_counts_tokens_of_texts_and_each_truncated_item_once():
    # "x" * 12 is cut to 9 characters by the cap, then over 6 it is also cut at the token limit.
    body = request("x" * 12, "abcdefgh", "ab")
    result = embed(service(LengthEmbedder(), text_parts=2), body)
    assert result.prompt_tokens == 3 * (9 + 8 + 2)
    assert result.truncated == [True, True, False]
    assert result.truncated_count == 2


def test_a_token_limit_in_a_part_names_the_item_in_the_whole_request():
    body = request("a", "toolong", "bb", "c", truncate="NONE", facts=FACTS)
    with pytest.raises(TokenLimitExceeded) as raised:
        embed(service(LengthEmbedder(), text_parts=2), body)
    assert (raised.value.item, raised.value.param) == (1, "input[1]")


def test_of_two_failing_items_the_first_in_input_order_is_reported():
    # Dealt by length, "alsolong" (input[0]) goes in the last part, after "toolong" (input[3]).
    body = request("alsolong", "b", "c", "toolong", truncate="NONE", facts=FACTS)
    for _ in range(3):
        with pytest.raises(TokenLimitExceeded) as raised:
            embed(service(LengthEmbedder(), text_parts=4), body)
        assert raised.value.param == "input[0]"


def test_text_failures_come_before_image_failures():
    body = request(image(b"bad"), "toolong", truncate="NONE")
    with pytest.raises(TokenLimitExceeded):
        embed(service(LengthEmbedder(bad_images=(b"bad",)), text_parts=1), body)


def test_a_refused_image_names_its_input_index():
    body = request("a", image(b"ok"), image(b"bad"))
    with pytest.raises(ImageRejected) as raised:
        embed(service(LengthEmbedder(bad_images=(b"bad",)), text_parts=1), body)
    assert (raised.value.param, raised.value.message) == (
        "input[2]",
        "input[2]: cannot identify image file",
    )


def test_a_backend_failure_passes_through_unchanged():
    class Down(LengthEmbedder):
        async def embed_texts(self, texts, options):
            raise BackendUnavailable("the model backend is unavailable")

    with pytest.raises(BackendUnavailable):
        embed(service(Down(), text_parts=2), request("a", "b"))


def test_batch_work_reaches_the_towers_at_batch_priority_and_requests_at_realtime():
    embedder = FakeEmbedder()
    embed(service(embedder, text_parts=1), request("kucing"))
    embed(service(embedder, text_parts=1), request("oren"), priority=wire.PRIORITY_BATCH)
    assert [call["priority"] for call in embedder.calls] == [
        wire.PRIORITY_REALTIME,
        wire.PRIORITY_BATCH,
    ]


def test_a_batch_line_goes_to_the_towers_as_one_part_and_a_request_as_one_per_instance():
    embedder = LengthEmbedder()
    embed(service(embedder, text_parts=2), request("a", "bb", "ccc"))
    embed(service(embedder, text_parts=2), request("a", "bb", "ccc"), priority=wire.PRIORITY_BATCH)
    assert embedder.text_calls == [["a", "ccc"], ["bb"], ["a", "bb", "ccc"]]


def test_realtime_traffic_is_seen_for_the_quiet_seconds_after_a_request_and_batch_work_is_not():
    clock = FakeClock()
    batch_only = EmbeddingService(
        FakeEmbedder(),
        text_parts=1,
        max_tokens=256,
        deadline_s=30.0,
        admission=Admission(admit_fraction=0.8, fair_fraction=0.5, clock=clock),
        breaker=CircuitBreaker(FakeEmbedder().probe, threshold=2, probe_interval_s=60),
        metrics=Metrics(),
        clock=clock,
    )
    embed(batch_only, request("oren"), priority=wire.PRIORITY_BATCH)
    assert not batch_only.realtime_within(1.0)
    embed(batch_only, request("kucing"))
    clock.now += 0.9
    assert batch_only.realtime_within(1.0)
    clock.now += 0.2
    assert not batch_only.realtime_within(1.0)
