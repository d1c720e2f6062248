"""Where evaluation gets its vectors: in this process (MiniLM + the demo tower in torch) or from
the running API (POST /v1/embeddings), so the served model is measured the same way."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Protocol

import numpy as np

MAX_TEXTS_PER_REQUEST = 64
MAX_IMAGES_PER_REQUEST = 8


class Embedder(Protocol):
    def texts(self, texts: list[str]) -> np.ndarray:
        """float32 [n, d], L2-normalized, in input order."""
        ...

    def images(self, pngs: list[bytes]) -> np.ndarray:
        """float32 [n, d], L2-normalized, in input order, from encoded PNG files."""
        ...


def _unit(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)


class InProcess:
    """The frozen text tower and the vision tower from `weights_dir`, both in torch on the CPU."""

    def __init__(self, weights_dir: Path, *, threads: int = 2) -> None:
        import torch

        from export.demo import text
        from export.demo.vision import load_vision_tower

        torch.set_num_threads(threads)
        self._text_model = text.load_text_tower()
        self._tower = load_vision_tower(weights_dir)

    def texts(self, texts: list[str]) -> np.ndarray:
        from export.demo import text

        return text.embed_texts(self._text_model, texts)

    def images(self, pngs: list[bytes]) -> np.ndarray:
        import torch
        from PIL import Image

        from export.demo import preprocess

        # Decoded from the same bytes the HTTP path sends: both sources see identical pixels.
        pictures = [Image.open(io.BytesIO(data)) for data in pngs]
        outputs = []
        with torch.no_grad():
            for start in range(0, len(pictures), 64):
                pixels = preprocess.pixel_values(pictures[start : start + 64])
                outputs.append(self._tower(torch.from_numpy(pixels)).numpy())
        return _unit(np.concatenate(outputs))


class OverHttp:
    """`POST {base_url}/v1/embeddings`: texts as strings, images as base64 PNG objects, in
    requests no larger than the API's per-request limits."""

    def __init__(
        self,
        base_url: str,
        *,
        model: str = "epithre-embed",
        api_key: str | None = None,
        timeout: float = 120.0,
        transport=None,  # an httpx transport: tests answer without a server
    ) -> None:
        import httpx

        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(
            base_url=base_url.rstrip("/"), headers=headers, timeout=timeout, transport=transport
        )
        self._model = model

    def _embed(self, inputs: list, per_request: int) -> np.ndarray:
        rows: list[list[float]] = []
        for start in range(0, len(inputs), per_request):
            chunk = inputs[start : start + per_request]
            response = self._client.post(
                "/v1/embeddings", json={"model": self._model, "input": chunk}
            )
            if response.status_code != 200:
                raise RuntimeError(
                    f"POST /v1/embeddings answered {response.status_code}: {response.text[:500]}"
                )
            data = response.json()["data"]
            if len(data) != len(chunk):
                raise RuntimeError(f"asked for {len(chunk)} embeddings, got {len(data)}")
            # The contract promises input order; `index`, where present, is checked, not trusted.
            for position, item in enumerate(data):
                if item.get("index", position) != position:
                    raise RuntimeError(f"embedding {position} came back as index {item['index']}")
                rows.append(item["embedding"])
        return _unit(np.asarray(rows, dtype=np.float32))

    def texts(self, texts: list[str]) -> np.ndarray:
        return self._embed(list(texts), MAX_TEXTS_PER_REQUEST)

    def images(self, pngs: list[bytes]) -> np.ndarray:
        items = [
            {"type": "image", "image": base64.standard_b64encode(data).decode("ascii")}
            for data in pngs
        ]
        return self._embed(items, MAX_IMAGES_PER_REQUEST)

    def close(self) -> None:
        self._client.close()
