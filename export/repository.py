"""Fill the Triton model repository from a checkpoint: ONNX towers, tokenizer, configs, report."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from export import configs, variants
from export.checkpoint import CheckpointError
from export.facts import ServedFacts
from model_repository import wire

REPORT_FILE = "export_report.json"
PRODUCTION_CONFIG = Path("configs") / "production.pbtxt"
# The committed Python models; an export elsewhere starts from a copy of them.
SOURCE_REPOSITORY = Path(__file__).resolve().parents[1] / "model_repository"
GENERATED = ("config.pbtxt", "configs", "*.onnx", "tokenizer", REPORT_FILE, "__pycache__")
IMAGE_MODELS = (wire.IMAGE_PREPROCESS, wire.IMAGE_ENCODER, wire.ENSEMBLE_IMAGE)


@contextmanager
def step(message: str) -> Iterator[None]:
    """Progress for the slow steps: the message now, the seconds when it is done."""
    print(f"-> {message} ...", file=sys.stderr, flush=True)
    started = time.monotonic()
    yield
    print(f"   done in {time.monotonic() - started:.1f}s", file=sys.stderr, flush=True)


def fingerprint(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def _write(repository: Path, config, relative: Path = Path("config.pbtxt")) -> None:
    path = repository / config.name / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(configs.to_pbtxt(config))


def _prepare(repository: Path, *, with_images: bool) -> None:
    """Copy the committed Python models into a new repository; drop stale generated files."""
    if repository.resolve() != SOURCE_REPOSITORY:
        skipped = () if with_images else IMAGE_MODELS
        # Links are followed: each model folder gets a file of its own for the links it holds
        # (wire.py, and image_encoder's model.py), so the copy works wherever it is moved.
        shutil.copytree(
            SOURCE_REPOSITORY,
            repository,
            dirs_exist_ok=True,
            ignore=shutil.ignore_patterns(*GENERATED, *skipped),
        )
    # An fp16 graph from an earlier export would outlive the config that served it.
    (repository / wire.TEXT_ENCODER / "1" / variants.FP16_FILE).unlink(missing_ok=True)
    for model in IMAGE_MODELS if not with_images else ():
        for stale in (repository / model / "config.pbtxt", repository / model / "1" / "model.onnx"):
            stale.unlink(missing_ok=True)


def export_repository(
    checkpoint_dir: Path,
    repository: Path,
    *,
    pool_in_graph: bool = True,
    vision_dir: Path | None = None,
    variant: str = "fp32",
    min_cosine: float = variants.DEFAULT_MIN_COSINE,
) -> dict:
    """Export `checkpoint_dir` (+ a demo vision tower) into `repository`; ParityError on mismatch.

    Usage: `python -m export --checkpoint ./my-st-model --repository model_repository`

    A sentence-transformers folder gives the text tower (and, with `vision_dir`, the project's
    demo vision tower beside it); a CLIP or SigLIP folder gives both towers.
    With `pool_in_graph=False` the text graph outputs token states and embed_postprocess pools.
    `variant` int8 or fp16 is published only at `min_cosine` to the fp32 text graph or above
    (the report's "variant" says which graph is served and why); the vision tower stays fp32.
    """
    from export import dual_tower
    from export.probes import PROBES

    kind = dual_tower.model_type(checkpoint_dir)
    with_images = kind is not None or vision_dir is not None
    if with_images and not pool_in_graph:
        raise CheckpointError("pooling outside the graph is for text-only checkpoints")
    _prepare(repository, with_images=with_images)
    text_onnx = repository / wire.TEXT_ENCODER / "1" / "model.onnx"
    image_onnx = repository / wire.IMAGE_ENCODER / "1" / "model.onnx"
    report: dict = {"checkpoint": str(checkpoint_dir)}
    with step(f"loading {checkpoint_dir}"):
        if kind is not None:
            source = dual_tower.DualTower.load(checkpoint_dir, kind)
        else:
            from export.sentence_transformer import SentenceTransformerTower

            source = SentenceTransformerTower.load(checkpoint_dir, pool_in_graph=pool_in_graph)
    text = source.text
    where = "fused into the graph" if pool_in_graph else "left to the postprocess"
    with step(f"exporting the text tower to ONNX (pooling {where})"):
        source.export_text(text_onnx)
    with step(f"checking text parity on {len(PROBES)} Indonesian probes"):
        report["text_parity_fp32"] = source.text_parity(text_onnx).as_dict()
    tokenizer_path = repository / wire.TEXT_PREPROCESS / "1" / "tokenizer" / "tokenizer.json"
    tokenizer_path.parent.mkdir(parents=True, exist_ok=True)
    source.tokenizer.backend_tokenizer.save(str(tokenizer_path))
    with step(f"making the {variant} variant of the text tower"):
        features = variants.text_features(source.tokenizer, text, variants.comparison_texts())
        text_variant = variants.publish_variant(variant, text_onnx, features, threshold=min_cosine)
    report["variant"] = text_variant.as_dict()

    image = None
    if kind is not None:
        image = source.image
        with step("exporting the vision tower to ONNX"):
            source.export_image(image_onnx)
        with step("checking image parity"):
            report["image_parity_fp32"] = source.image_parity(image_onnx).as_dict()
    elif vision_dir is not None:
        from export.demo_vision import export_demo_vision

        with step(f"exporting the demo vision tower from {vision_dir}"):
            image, parity = export_demo_vision(
                vision_dir, image_onnx, text_dimension=text.dimension
            )
        report["image_parity_fp32"] = parity.as_dict()

    production_onnx = text_onnx.with_name(text_variant.production_file)
    exported = [text_onnx, tokenizer_path] + ([image_onnx] if image else [])
    exported += [production_onnx] if production_onnx != text_onnx else []
    served = ServedFacts(
        native_dimension=text.dimension,
        max_tokens=text.max_tokens,
        fingerprint=fingerprint(exported),
        modalities=("text", "image") if image else ("text",),
    )
    _write(repository, configs.text_preprocess(text))
    _write(repository, configs.text_encoder(text, backend="python"))
    production = configs.text_encoder(text, backend="onnxruntime")
    production.default_model_filename = text_variant.production_file
    _write(repository, production, PRODUCTION_CONFIG)
    _write(repository, configs.embed_postprocess(text, served))
    _write(repository, configs.embed_text(text, served))
    if image is not None:
        _write(repository, configs.image_preprocess(image))
        _write(repository, configs.image_encoder(image, backend="python"))
        _write(repository, configs.image_encoder(image, backend="onnxruntime"), PRODUCTION_CONFIG)
        _write(repository, configs.embed_image())
    report.update(
        pooling=text.pooling,
        pooling_in="graph" if pool_in_graph else "postprocess",
        native_dimension=served.native_dimension,
        max_tokens=served.max_tokens,
        modalities=list(served.modalities),
        fingerprint=served.fingerprint,
    )
    (repository / wire.TEXT_ENCODER / REPORT_FILE).write_text(json.dumps(report, indent=2))
    return report
