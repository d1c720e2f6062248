"""Image benchmarks: seeded photo-sized files, the in-process ceiling, the served patterns.

The ceiling runs the very preprocessing module Triton runs (image_preprocess/1/imaging.py, with
the processor settings from its config.pbtxt) and then image_encoder's model.onnx, so a served
to ceiling ratio measures serving overhead only.
"""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import onnxruntime as ort
from google.protobuf import text_format
from PIL import Image, ImageDraw
from tritonclient.grpc import model_config_pb2

from bench.baselines import Throughput
from bench.load import CONCURRENCY, Result, Target, client, in_flight, measure

# Common camera and screenshot sizes, both orientations: decode and resize cost scale with them.
SIZES = ((640, 480), (480, 640), (800, 600), (1024, 768), (1280, 720), (720, 1280), (512, 512))
PNG_SHARE = 0.25  # most photos travel as JPEG; PNG (bigger, slower to decode) is the rest
BATCH_SIZES = (1, 8, 16)
PER_REQUEST = 8  # the contract's maximum of image items per request


def _photo(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    # Smooth colour fields with a few shapes and sensor noise: JPEG sizes like real photos,
    # which pure noise (too big) or flat colour (too small) would not give.
    coarse = rng.integers(0, 256, (rng.integers(3, 9), rng.integers(3, 9), 3), dtype=np.uint8)
    image = Image.fromarray(coarse, "RGB").resize((width, height), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(image)
    for _ in range(rng.integers(3, 12)):
        x, y = rng.integers(0, width), rng.integers(0, height)
        r = int(rng.integers(10, min(width, height) // 3))
        fill = tuple(int(c) for c in rng.integers(0, 256, 3))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=fill)
    noise = rng.integers(-8, 9, (height, width, 3), dtype=np.int16)
    return Image.fromarray(np.clip(np.asarray(image) + noise, 0, 255).astype(np.uint8), "RGB")


def images(count: int, *, seed: int = 0) -> list[bytes]:
    """`count` encoded files, JPEG and PNG mixed, of varied photo sizes; the same for one seed."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        width, height = SIZES[rng.integers(len(SIZES))]
        buffer = io.BytesIO()
        if rng.random() < PNG_SHARE:
            _photo(rng, width, height).save(buffer, format="PNG")
        else:
            quality = int(rng.integers(75, 95))
            _photo(rng, width, height).save(buffer, format="JPEG", quality=quality)
        out.append(buffer.getvalue())
    return out


def _module(path: Path) -> ModuleType:
    # Loaded by path: model_repository/ is not a package, and this must be Triton's own file.
    spec = importlib.util.spec_from_file_location(f"_bench_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _parameters(config: Path) -> dict[str, str]:
    parsed = text_format.Parse(config.read_text(), model_config_pb2.ModelConfig())
    return {key: value.string_value for key, value in parsed.parameters.items()}


def in_process_images(images: list[bytes], repository: Path) -> dict:
    """Best images/s over batch sizes: Triton's preprocessing then ORT on all cores, one thread
    feeding it; also the mean preprocessing time per image, the part no batching speeds up."""
    imaging = _module(repository / "image_preprocess" / "1" / "imaging.py")
    # Read as image_preprocess/1/model.py's initialize() reads them.
    params = _parameters(repository / "image_preprocess" / "config.pbtxt")
    settings, max_pixels = json.loads(params["processor"]), int(params["max_pixels"])
    encoder = _parameters(repository / "image_encoder" / "config.pbtxt")
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(encoder["intra_op_threads"])
    # As image_encoder/1/model.py sets it: spinning pool threads take the core that
    # preprocesses the next batch (batch-1 throughput halved on 2 cores with "1").
    options.add_session_config_entry("session.intra_op.allow_spinning", encoder["allow_spinning"])
    session = ort.InferenceSession(
        str(repository / "image_encoder" / "1" / encoder["onnx_file"]),
        options,
        providers=["CPUExecutionProvider"],
    )
    (input_name,) = [i.name for i in session.get_inputs()]

    def preprocess(data: bytes) -> np.ndarray:
        return imaging.pixel_values(imaging.open_image(data, max_pixels=max_pixels), settings)

    session.run(None, {input_name: np.stack([preprocess(d) for d in images[:8]])})  # warm-up
    started = time.perf_counter()
    for data in images:
        preprocess(data)
    preprocess_ms = (time.perf_counter() - started) / len(images) * 1000
    by_batch = {}
    for batch in BATCH_SIZES:
        wall, cpu = time.perf_counter(), time.process_time()
        for start in range(0, len(images), batch):
            chunk = [preprocess(d) for d in images[start : start + batch]]
            session.run(None, {input_name: np.stack(chunk)})
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        by_batch[batch] = Throughput(len(images) / wall, cpu * 1000 / len(images))
    best = max(by_batch, key=lambda b: by_batch[b].items_per_s)
    return {
        "images_per_s": by_batch[best].items_per_s,
        "batch": best,
        "by_batch": by_batch,
        "preprocess_ms": preprocess_ms,
        "mean_bytes": float(np.mean([len(d) for d in images])),
    }


def _item(data: bytes) -> dict:
    mime = "image/png" if data.startswith(b"\x89PNG") else "image/jpeg"
    return {"type": "image", "image_url": f"data:{mime};base64,{base64.b64encode(data).decode()}"}


async def image_patterns(target: Target, images: list[bytes]) -> list[Result]:
    """Single-image requests at each concurrency, then 8-image requests sequential and 4 in
    flight. Items are base64 data URIs built before any clock starts."""
    items = [_item(d) for d in images]
    singles = [[item] for item in items]
    eights = [items[i : i + PER_REQUEST] for i in range(0, len(items), PER_REQUEST)]
    patterns = [(f"single-image requests, {c} in flight", singles, c) for c in CONCURRENCY]
    patterns += [
        (f"{PER_REQUEST}-image requests, sequential", eights, 1),
        (f"{PER_REQUEST}-image requests, 4 in flight", eights, 4),
    ]
    async with client(target) as http:
        await in_flight(http, target, eights[:2], 2)  # warm-up: connections, first batches
        return [await measure(http, target, *pattern) for pattern in patterns]
