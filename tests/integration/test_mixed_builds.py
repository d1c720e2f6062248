"""Two Tritons serving two exports under one name behind one gateway: no answer mixes them.

A rolling upgrade as it looks to the gateway: one round_robin channel to two tritonservers, one
serving a tiny CLIP checkpoint and one the same architecture with other weights. Every response
is checked against the PyTorch vectors of both builds.
"""

from __future__ import annotations

import asyncio
import shutil
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest

from export.repository import export_repository
from runner.stack import gateway_process
from runner.triton import LocalTriton, TritonPorts
from tests import tiny_models
from tests.integration.conftest import cosine
from tests.integration.images import encode, image_item, scene

pytestmark = pytest.mark.integration

REQUESTS = 500
CONCURRENCY = 8
TEXTS = ("kucing oren", "anjing tidur", "rumah merah", "langit biru", "nasi goreng", "kopi")
IMAGES = (scene((220, 30, 30)), scene((30, 60, 220), "square"), scene((0, 180, 0)))
# A vector is of a build when it is this close to the build's PyTorch vector for its item.
SAME = 0.9999


@dataclass(frozen=True)
class Build:
    fingerprint: str
    texts: dict[str, np.ndarray]  # PyTorch vector of each of TEXTS
    images: list[np.ndarray]  # PyTorch vector of each of IMAGES


def _reseeded(checkpoint: Path, destination: Path, *, seed: int) -> Path:
    """`checkpoint`'s architecture, tokenizer and processor with weights drawn from `seed`."""
    import torch
    from transformers import CLIPConfig, CLIPModel

    shutil.copytree(checkpoint, destination)
    torch.manual_seed(seed)
    CLIPModel(CLIPConfig.from_pretrained(checkpoint)).save_pretrained(destination)
    return destination


def _reference(checkpoint: Path, fingerprint: str) -> Build:
    import torch
    from transformers import AutoModel, AutoTokenizer
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    model = AutoModel.from_pretrained(checkpoint).eval()
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    processor = CLIPImageProcessorPil.from_pretrained(checkpoint)
    with torch.no_grad():
        texts = {
            text: model.get_text_features(**tokenizer([text], return_tensors="pt"))
            .pooler_output[0]
            .numpy()
            for text in TEXTS
        }
        pixels = processor(list(IMAGES), return_tensors="pt")["pixel_values"]
        images = list(model.get_image_features(pixel_values=pixels).pooler_output.numpy())
    return Build(fingerprint=fingerprint, texts=texts, images=images)


@pytest.fixture(scope="module")
def upgrade(tmp_path_factory):
    """(gateway base URL, the two builds) with both Tritons behind the gateway's one channel."""
    root = tmp_path_factory.mktemp("mixed-builds")
    old = tiny_models.build_dual("clip", root / "old")
    new = _reseeded(old, root / "new", seed=1)
    builds = []
    for checkpoint in (old, new):
        report = export_repository(checkpoint, root / f"{checkpoint.name}-repo")
        builds.append(_reference(checkpoint, report["fingerprint"]))
    with ExitStack() as stack:
        tritons = [
            stack.enter_context(
                LocalTriton(
                    root / f"{checkpoint.name}-repo",
                    ports=TritonPorts.free(),
                    workdir=root / f"{checkpoint.name}-triton",
                    log_path=root / f"{checkpoint.name}-triton.log",
                )
            )
            for checkpoint in (old, new)
        ]
        for triton in tritons:
            triton.wait_ready(deadline_s=180)
        target = "ipv4:" + ",".join(triton.grpc_url for triton in tritons)
        _, base_url = stack.enter_context(gateway_process(target))
        yield base_url, builds


def _items(n: int) -> tuple[list[str], int]:
    """Request `n`'s texts (three of TEXTS) and the index of its image in IMAGES."""
    return [TEXTS[(n + k) % len(TEXTS)] for k in range(3)], n % len(IMAGES)


def _build_of(payload: dict, texts: list[str], image: int, builds: list[Build]) -> set[str]:
    """The fingerprints of the builds whose vectors came back, one per item."""
    found = set()
    for d in payload["data"]:
        index = d["index"]
        matches = {
            b.fingerprint
            for b in builds
            if cosine(d["embedding"], b.texts[texts[index]] if index < 3 else b.images[image])
            >= SAME
        }
        assert len(matches) == 1, f"item {index} matches {len(matches)} builds"
        found |= matches
    return found


async def _send_all(base_url: str) -> list[tuple[int, httpx.Response]]:
    encoded = [image_item(encode(image)) for image in IMAGES]
    gate = asyncio.Semaphore(CONCURRENCY)
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:

        async def one(n: int) -> tuple[int, httpx.Response]:
            texts, image = _items(n)
            body = {"model": "epithre-embed", "input": [*texts, encoded[image]]}
            async with gate:
                return n, await client.post("/v1/embeddings", json=body)

        return await asyncio.gather(*(one(n) for n in range(REQUESTS)))


def test_no_response_mixes_two_builds_and_its_header_names_the_one_it_holds(upgrade):
    base_url, builds = upgrade
    fingerprints = {b.fingerprint for b in builds}
    assert len(fingerprints) == 2
    # The two builds are told apart by every item's vector.
    assert all(cosine(builds[0].texts[t], builds[1].texts[t]) < 0.99 for t in TEXTS)
    assert all(cosine(a, b) < 0.99 for a, b in zip(builds[0].images, builds[1].images, strict=True))

    refused = 0
    for n, response in asyncio.run(_send_all(base_url)):
        if response.status_code == 503:
            # Parts kept coming back from different builds: refused whole, never mixed.
            assert response.json()["error"]["code"] == "model_upgrading"
            assert response.headers["retry-after"] == "1"
            refused += 1
            continue
        assert response.status_code == 200, response.text
        texts, image = _items(n)
        (build,) = _build_of(response.json(), texts, image, builds)
        assert response.headers["x-model-fingerprint"] == build

    # Both builds answered parts, and the parts sent again made nearly every request whole.
    ready = httpx.get(f"{base_url}/health/ready", timeout=10).json()
    assert set(ready["builds"]) == fingerprints
    assert refused <= REQUESTS // 10
    metrics = httpx.get(f"{base_url}/metrics", timeout=10).text
    retries = next(
        float(line.split()[1])
        for line in metrics.splitlines()
        if line.startswith("epithre_build_mismatch_retries_total")
    )
    assert retries > 0
