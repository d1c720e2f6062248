"""`python -m bench.protocol`: parse + render of one request, in process, without a server.

Times what the gateway does itself for a 64-text and an 8-image request: `orjson.loads` of the
body, validation against this deployment's request type (image checks included), and rendering
the response from float32 vectors. Reports the minimum over several runs, in milliseconds.
"""

from __future__ import annotations

import base64
import io
import time

import numpy as np
import orjson
from PIL import Image

from gateway.embedder import ModelFacts
from gateway.encoding import render_embeddings
from gateway.protocol import Limits
from gateway.service import Embeddings
from gateway.settings import Settings
from gateway.validation import parse_request, request_type

COMMAND = "PYTHONPATH=. .venv/bin/python -m bench.protocol"
RUNS, CALLS = 7, 20
FACTS = ModelFacts(
    served_model_name="epithre-embed",
    native_dimension=384,
    max_tokens=256,
    fingerprint="0" * 64,
    supports_images=True,
    max_image_pixels=40_000_000,
)


def bodies(seed: int = 0) -> dict[str, bytes]:
    """The two requests: 64 texts of 5-120 words, and 8 copies of a 512x512 noise PNG (1 MB)."""
    rng = np.random.default_rng(seed)
    texts = [" ".join(["kalimat"] * int(n)) for n in rng.integers(5, 120, 64)]
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (512, 512, 3), dtype=np.uint8)).save(buffer, "PNG")
    image = {"type": "image", "image": base64.b64encode(buffer.getvalue()).decode()}
    return {
        "64 texts": orjson.dumps({"model": "epithre-embed", "input": texts}),
        "8 images": orjson.dumps({"model": "epithre-embed", "input": [image] * 8}),
    }


def parse_and_render_ms(body: bytes) -> float:
    """The minimum over RUNS of the mean time of CALLS parse + render round trips."""
    request = request_type(Limits.of(Settings(), FACTS))
    n = len(orjson.loads(body)["input"])
    vectors = np.random.default_rng(1).standard_normal((n, 384)).astype(np.float32)
    best = float("inf")
    for _ in range(RUNS):
        started = time.perf_counter()
        for _ in range(CALLS):
            parsed = parse_request(orjson.loads(body), request)
            result = Embeddings(
                vectors=vectors,
                types=["image" if isinstance(i, bytes) else "text" for i in parsed.input],
                truncated=[False] * n,
                prompt_tokens=100,
            )
            render_embeddings(result, encoding_format="float", model="epithre-embed")
        best = min(best, (time.perf_counter() - started) / CALLS)
    return best * 1e3


def main() -> None:
    for name, body in bodies().items():
        print(f"{name} ({len(body) / 1e6:.2f} MB body): {parse_and_render_ms(body):.3f} ms")


if __name__ == "__main__":
    main()
