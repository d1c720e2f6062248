"""A deterministic fake `Embedder`, a client helper and tiny images for the gateway unit tests."""

from __future__ import annotations

import base64
import dataclasses
import io
import struct
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import grpc
import numpy as np
from PIL import Image
from starlette.testclient import TestClient

from gateway import ModelFacts, Settings, TextEmbeddings, create_app
from gateway.embedder import EmbedOptions, ImageEmbedding
from gateway.triton import map_triton_errors
from model_repository import wire

FACTS = ModelFacts(
    served_model_name="epithre-embed", native_dimension=384, max_tokens=256, fingerprint="f" * 64
)


MULTIMODAL = dataclasses.replace(FACTS, supports_images=True, max_image_pixels=40_000_000)


class FakeClock:
    """Seconds that pass only when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def fake_vector(
    text: str, dimensions: int = FACTS.native_dimension, *, build: str = FACTS.fingerprint
) -> np.ndarray:
    """The fake's vector for `text` from `build`: seeded by their CRC (so two builds give two
    vectors), prefix-truncated, L2-normalized."""
    rng = np.random.default_rng(zlib.crc32(f"{build}:{text}".encode()))
    vector = rng.standard_normal(FACTS.native_dimension).astype(np.float32)[:dimensions]
    return vector / np.linalg.norm(vector)


def fake_tokens(text: str) -> int:
    return len(text.split()) + 2  # [CLS] and [SEP]


@dataclass
class FakeEmbedder:
    """Records every call; `error` is raised by embed_texts, `probe_error` by probe.

    Each answer names the next build of `builds`, in the order the calls come (an exception there
    is raised instead), then the facts' fingerprint once `builds` is spent.
    """

    facts_value: ModelFacts = FACTS
    error: Exception | None = None
    image_error: Exception | None = None
    probe_error: Exception | None = None
    facts_errors: list[Exception] = field(default_factory=list)
    token_truncated: set[int] = field(default_factory=set)
    builds: list[str | Exception] = field(default_factory=list)
    calls: list[dict] = field(default_factory=list)
    closed: bool = False

    async def facts(self) -> ModelFacts:
        if self.facts_errors:
            raise self.facts_errors.pop(0)
        return self.facts_value

    async def embed_texts(self, texts, options: EmbedOptions) -> TextEmbeddings:
        self.calls.append(
            {
                "texts": list(texts),
                "instruction": options.instruction,
                "truncate": options.truncate,
                "dimensions": options.dimensions,
                "priority": options.priority,
            }
        )
        if self.error is not None:
            raise self.error
        build = self._next_build()
        return TextEmbeddings(
            vectors=np.stack([fake_vector(t, options.dimensions, build=build) for t in texts]),
            tokens=np.array([fake_tokens(t) for t in texts], dtype=np.int32),
            truncated=np.array([i in self.token_truncated for i in range(len(texts))]),
            build=build,
        )

    async def embed_image(self, image: bytes, options: EmbedOptions) -> ImageEmbedding:
        self.calls.append({"image": image, "dimensions": options.dimensions})
        if self.image_error is not None:
            raise self.image_error
        build = self._next_build()
        return ImageEmbedding(
            vector=fake_vector(image.hex(), options.dimensions, build=build), build=build
        )

    def _next_build(self) -> str:
        build = self.builds.pop(0) if self.builds else self.facts_value.fingerprint
        if isinstance(build, Exception):
            raise build
        return build

    async def probe(self) -> None:
        if self.probe_error is not None:
            raise self.probe_error

    async def close(self) -> None:
        self.closed = True


@contextmanager
def serve(
    embedder: FakeEmbedder | None = None,
    *,
    clock: Callable[[], float] = time.monotonic,
    **settings: object,
) -> Iterator[tuple[TestClient, FakeEmbedder]]:
    """Run the app's lifespan around a TestClient; `settings` override `Settings` fields."""
    embedder = embedder or FakeEmbedder()
    app = create_app(Settings(**settings), embedder, clock=clock)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client, embedder


def error_body(message: str, *, type: str, param: str | None, code: str | None) -> dict:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def token_limit(item: int, tokens: int, limit: int) -> str:
    """text_preprocess's message for a text over the token limit, as the ensemble forwards it."""
    error = wire.ItemError(wire.TOKEN_LIMIT, item=item, details={"tokens": tokens, "limit": limit})
    return f"in ensemble 'embed_text', {error.encode()}"


def invalid_image(reason: str) -> str:
    """image_preprocess's message for an image it refuses, as the ensemble forwards it."""
    error = wire.ItemError(wire.INVALID_IMAGE, item=0, details={"reason": reason})
    return f"in ensemble 'embed_image', {error.encode()}"


def grpc_error(status: grpc.StatusCode, message: str) -> grpc.aio.AioRpcError:
    """A failed call as Triton's gRPC stub raises it."""
    return grpc.aio.AioRpcError(status, grpc.aio.Metadata(), grpc.aio.Metadata(), message)


def triton_failure(status: str, message: str) -> Exception:
    """An error as TritonEmbedder raises it: a failed gRPC call, `status` spelled as
    str(grpc.StatusCode.X), passed through the map."""
    try:
        with map_triton_errors():
            raise grpc_error(grpc.StatusCode[status.removeprefix("StatusCode.")], message)
    except Exception as exc:
        return exc
    raise AssertionError("unreachable")


def encoded_image(fmt: str = "PNG", mode: str = "RGB", size: tuple[int, int] = (8, 6)) -> bytes:
    """A tiny image file made by Pillow."""
    buffer = io.BytesIO()
    Image.new(mode, size).save(buffer, format=fmt)
    return buffer.getvalue()


def png_header_claiming(width: int, height: int) -> bytes:
    """A valid PNG header whose IHDR claims `width` x `height`, with no pixel data behind it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
