"""The public HTTP API (POST /v1/embeddings) in front of the Triton ensemble."""

from __future__ import annotations

from gateway.app import create_app
from gateway.embedder import Embedder, ModelFacts, TextEmbeddings
from gateway.settings import Settings

__all__ = ["Embedder", "ModelFacts", "Settings", "TextEmbeddings", "create_app"]
