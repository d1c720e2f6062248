"""One build per answer: two exports served under one name (a rolling upgrade) never mix."""

from __future__ import annotations

import dataclasses

import httpx
import numpy as np
from gateway_fakes import (
    MULTIMODAL,
    FakeClock,
    FakeEmbedder,
    b64,
    encoded_image,
    error_body,
    fake_vector,
    serve,
)
from starlette.testclient import TestClient

from gateway.builds import RecentBuilds, majority
from gateway.embedder import EmbedOptions, ImageEmbedding
from gateway.errors import BackendUnavailable

OLD, NEW = "0" * 64, "1" * 64
PNG = encoded_image()
IMAGE = {"type": "image", "image": b64(PNG)}


def post(client: TestClient, items: list) -> httpx.Response:
    return client.post("/v1/embeddings", json={"model": "epithre-embed", "input": items})


def vectors(response: httpx.Response) -> np.ndarray:
    return np.array([d["embedding"] for d in response.json()["data"]], dtype=np.float32)


def image_calls(embedder: FakeEmbedder) -> int:
    return sum("image" in call for call in embedder.calls)


def test_the_build_kept_is_the_one_most_parts_name_and_on_a_tie_the_first_part_s():
    assert majority([OLD, NEW, NEW]) == NEW
    assert majority([OLD, NEW]) == OLD
    assert majority([NEW, OLD, OLD, NEW]) == NEW


def test_a_build_unseen_for_the_window_is_forgotten():
    clock = FakeClock()
    builds = RecentBuilds(window_s=60, clock=clock)
    builds.saw(OLD)
    clock.now += 10
    builds.saw(NEW)
    assert (builds.recent(), builds.mixed) == ([OLD, NEW], True)
    clock.now += 55
    assert (builds.recent(), builds.mixed, builds.latest) == ([NEW], False, NEW)


def test_an_image_from_another_build_is_sent_again_and_the_response_is_of_one_build():
    # The text answers from OLD and the image from NEW; of its two copies sent again, the second
    # answers from OLD.
    embedder = FakeEmbedder(facts_value=MULTIMODAL, builds=[OLD, NEW, NEW, OLD])
    with serve(embedder) as (client, _):
        response = post(client, ["teks", IMAGE])
        metrics = client.get("/metrics").text
    assert response.status_code == 200
    assert response.headers["x-model-fingerprint"] == OLD
    expected = [fake_vector("teks", build=OLD), fake_vector(PNG.hex(), build=OLD)]
    np.testing.assert_array_equal(vectors(response), np.stack(expected))
    assert image_calls(embedder) == 3
    assert "epithre_build_mismatch_retries_total 2.0" in metrics


def test_a_copy_sent_again_that_fails_is_not_an_error_when_the_other_answers():
    down = BackendUnavailable("the model backend is unavailable")
    embedder = FakeEmbedder(facts_value=MULTIMODAL, builds=[OLD, NEW, down, OLD])
    with serve(embedder) as (client, _):
        response = post(client, ["teks", IMAGE])
    assert (response.status_code, response.headers["x-model-fingerprint"]) == (200, OLD)


def test_parts_that_keep_coming_back_from_another_build_are_503_with_retry_after():
    embedder = FakeEmbedder(facts_value=MULTIMODAL, builds=[OLD] + [NEW] * 7)
    with serve(embedder) as (client, _):
        response = post(client, ["teks", IMAGE])
        metrics = client.get("/metrics").text
    assert (response.status_code, response.headers["retry-after"]) == (503, "1")
    assert response.json() == error_body(
        "the model is being upgraded and parts of this request kept coming back from different "
        "builds; retry shortly",
        type="service_unavailable_error",
        param=None,
        code="model_upgrading",
    )
    assert image_calls(embedder) == 7  # sent once, then three times two copies
    assert "epithre_build_mismatch_retries_total 6.0" in metrics


@dataclasses.dataclass
class SlowImages(FakeEmbedder):
    """Each image takes `image_s` of `clock`'s time; records the deadline each was sent with."""

    clock: FakeClock = dataclasses.field(default_factory=FakeClock)
    image_s: float = 0.0
    image_timeouts: list[float | None] = dataclasses.field(default_factory=list)

    async def embed_image(self, image: bytes, options: EmbedOptions) -> ImageEmbedding:
        self.image_timeouts.append(options.timeout_s)
        self.clock.now += self.image_s
        return await super().embed_image(image, options)


def test_a_part_is_sent_again_with_what_is_left_of_the_request_s_deadline():
    builds: list[str | Exception] = [OLD, NEW, NEW, NEW, NEW, OLD]
    embedder = SlowImages(facts_value=MULTIMODAL, builds=builds, image_s=5)
    with serve(embedder, clock=embedder.clock, request_timeout_s=30) as (client, _):
        response = post(client, ["teks", IMAGE])
    assert response.status_code == 200
    assert embedder.image_timeouts == [30, 25, 25, 15, 15]


def test_no_part_is_sent_again_past_the_request_s_deadline():
    embedder = SlowImages(facts_value=MULTIMODAL, builds=[OLD, NEW], image_s=30)
    with serve(embedder, clock=embedder.clock, request_timeout_s=30) as (client, _):
        response = post(client, ["teks", IMAGE])
    assert (response.status_code, response.json()["error"]["code"]) == (503, "model_upgrading")
    assert embedder.image_timeouts == [30]


def test_once_two_builds_answered_a_request_s_texts_go_as_one_part_until_the_window_ends():
    clock = FakeClock()
    facts = dataclasses.replace(MULTIMODAL, text_tower_instances=2)
    # The first request's two parts answer from two builds; the second part is sent again.
    embedder = FakeEmbedder(facts_value=facts, builds=[OLD, NEW, OLD, NEW])
    texts = ["a", "bb", "ccc", "dddd"]
    with serve(embedder, clock=clock) as (client, _):
        parts = []
        for wait_s in (0, 0, 61):
            clock.now += wait_s
            embedder.calls.clear()
            assert post(client, texts).status_code == 200
            parts.append([call["texts"] for call in embedder.calls])
    assert parts == [
        [["a", "ccc"], ["bb", "dddd"], ["bb", "dddd"], ["bb", "dddd"]],
        [texts],
        [["a", "ccc"], ["bb", "dddd"]],
    ]


def test_ready_lists_the_builds_that_answered_within_the_window():
    clock = FakeClock()
    embedder = FakeEmbedder(facts_value=MULTIMODAL, builds=[OLD, NEW, OLD, NEW])
    with serve(embedder, clock=clock) as (client, _):
        post(client, ["teks", IMAGE])
        seen = client.get("/health/ready").json()
        clock.now += 61
        later = client.get("/health/ready").json()
    assert seen == {"status": "ready", "builds": [OLD, NEW]}
    assert later == {"status": "ready", "builds": []}


def test_models_names_the_build_of_the_latest_answer_once_there_is_one():
    with serve(FakeEmbedder(builds=[NEW])) as (client, _):
        before = client.get("/v1/models").json()["data"][0]["fingerprint"]
        post(client, ["teks"])
        after = client.get("/v1/models").json()["data"][0]["fingerprint"]
    assert (before, after) == (MULTIMODAL.fingerprint, NEW)
