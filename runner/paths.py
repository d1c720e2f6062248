"""Where the runner finds the checkout's folders, wherever it is started from."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
DEFAULT_REPOSITORY = ROOT / "model_repository"
