"""Fill the Triton model repository from a checkpoint: ONNX tower, tokenizer, configs, report."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from export import configs, tensors
from export.checkpoint import Checkpoint
from export.parity import check_parity
from export.probes import PROBES
from export.tower import export_onnx, uses_token_type_ids

REPORT_FILE = "export_report.json"
PRODUCTION_CONFIG = Path("configs") / "production.pbtxt"
# The committed Python models; an export elsewhere starts from a copy of them.
SOURCE_REPOSITORY = Path(__file__).resolve().parents[1] / "model_repository"
GENERATED = ("config.pbtxt", "configs", "*.onnx", "tokenizer", REPORT_FILE, "__pycache__")


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


def write_config(repository: Path, config, relative: Path = Path("config.pbtxt")) -> None:
    path = repository / config.name / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(configs.to_pbtxt(config))


def export_text_model(
    checkpoint_dir: Path, repository: Path, *, pool_in_graph: bool = True
) -> dict:
    """Export `checkpoint_dir` into `repository`; raises ParityError if the graph disagrees.

    Usage: `python -m export --checkpoint ./my-st-model --repository model_repository`

    With `pool_in_graph=False` the graph outputs token embeddings and embed_postprocess pools.
    """
    # Imported here so that reading this module (e.g. for its paths) never loads torch.
    from sentence_transformers import SentenceTransformer

    with step(f"loading {checkpoint_dir}"):
        model = SentenceTransformer(str(checkpoint_dir), device="cpu", local_files_only=True)
    checkpoint = Checkpoint.of(checkpoint_dir, model)
    if repository.resolve() != SOURCE_REPOSITORY:
        shutil.copytree(
            SOURCE_REPOSITORY,
            repository,
            ignore=shutil.ignore_patterns(*GENERATED),
            dirs_exist_ok=True,
        )
    tokenizer = model.tokenizer
    onnx_path = repository / tensors.TEXT_ENCODER / "1" / "model.onnx"
    where = "fused into the graph" if pool_in_graph else "left to the postprocess"
    with step(f"exporting the text tower to ONNX (pooling {where})"):
        export_onnx(
            model[0].auto_model,
            checkpoint,
            model_input_names=list(tokenizer.model_input_names),
            pooled=pool_in_graph,
            destination=onnx_path,
        )
    with step(f"checking parity on {len(PROBES)} Indonesian probes"):
        parity = check_parity(model, onnx_path, PROBES, pooled=pool_in_graph)
    tokenizer_path = repository / tensors.TEXT_PREPROCESS / "1" / "tokenizer" / "tokenizer.json"
    tokenizer_path.parent.mkdir(parents=True, exist_ok=True)
    tokenizer.backend_tokenizer.save(str(tokenizer_path))

    facts = configs.ModelFacts(
        native_dimension=checkpoint.dimension,
        max_tokens=checkpoint.max_tokens,
        fingerprint=fingerprint([onnx_path, tokenizer_path]),
        uses_token_type_ids=uses_token_type_ids(list(tokenizer.model_input_names)),
        pooling=checkpoint.pooling,
        pooled_in_graph=pool_in_graph,
        include_prompt=checkpoint.include_prompt,
        instruction_template=checkpoint.instruction_template,
        pad_id=int(tokenizer.pad_token_id or 0),
    )
    write_config(repository, configs.text_preprocess(facts))
    write_config(repository, configs.text_encoder(facts, backend="python"))
    write_config(repository, configs.text_encoder(facts, backend="onnxruntime"), PRODUCTION_CONFIG)
    write_config(repository, configs.embed_postprocess(facts))
    write_config(repository, configs.embed_text(facts))
    report = {
        "checkpoint": str(checkpoint_dir),
        "pooling": checkpoint.pooling,
        "pooling_in": "graph" if pool_in_graph else "postprocess",
        "native_dimension": facts.native_dimension,
        "max_tokens": facts.max_tokens,
        "fingerprint": facts.fingerprint,
        "parity_fp32": parity.as_dict(),
    }
    (repository / tensors.TEXT_ENCODER / REPORT_FILE).write_text(json.dumps(report, indent=2))
    return report
