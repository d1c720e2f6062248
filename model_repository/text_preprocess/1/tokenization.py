"""Tokenize a merged batch of texts: instruction template, token-level truncation, padding.

Pure functions over `tokenizers`; `model.py` is the Triton shell around them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import wire
from tokenizers import Tokenizer

# Padding to a multiple keeps the shapes of different executions equal more often, so Triton's
# batcher (which merges only equal shapes) can merge them at the encoder.
PAD_MULTIPLE = 16


class TokenLimitExceeded(ValueError):
    def __init__(self, *, tokens: int, limit: int) -> None:
        super().__init__(f"{tokens} tokens > limit {limit}")
        self.tokens = tokens
        self.limit = limit


@dataclass(frozen=True)
class Encoded:
    ids: list[int]
    pooling_start: int  # positions before this are left out of pooling (the instruction)
    truncated: bool


class TextTokenizer:
    """Usage: `TextTokenizer.from_file(path, max_tokens=256).encode_batch(texts, ...)`."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        *,
        max_tokens: int,
        instruction_template: str = "{instruction} ",
        include_prompt: bool = True,
    ) -> None:
        tokenizer.no_truncation()
        tokenizer.no_padding()
        self._tokenizer = tokenizer
        self.max_tokens = max_tokens
        self.instruction_template = instruction_template
        self.include_prompt = include_prompt
        self._prefix, self._suffix = _special_tokens(tokenizer)
        self._budget = max_tokens - len(self._prefix) - len(self._suffix)
        self._prompt_length = lru_cache(maxsize=256)(self._count_prompt_tokens)

    @classmethod
    def from_file(cls, path: str, **options: object) -> TextTokenizer:
        return cls(Tokenizer.from_file(path), **options)  # type: ignore[arg-type]

    def _count_prompt_tokens(self, prompt: str) -> int:
        return len(self._tokenizer.encode(prompt, add_special_tokens=False).ids)

    def encode_batch(
        self, texts: list[str], instructions: list[str], truncate: list[str]
    ) -> list[Encoded | TokenLimitExceeded]:
        """One result per text; with truncate NONE an over-limit text yields its error."""
        prompts = [
            self.instruction_template.format(instruction=i) if i else "" for i in instructions
        ]
        joint = self._tokenizer.encode_batch(
            [p + t for p, t in zip(prompts, texts, strict=True)], add_special_tokens=False
        )
        return [
            self._fit(encoding.ids, self._prompt_length(prompt) if prompt else 0, mode)
            for encoding, prompt, mode in zip(joint, prompts, truncate, strict=True)
        ]

    def _fit(
        self, content: list[int], prompt_tokens: int, mode: str
    ) -> Encoded | TokenLimitExceeded:
        truncated = len(content) > self._budget
        if truncated:
            if mode == wire.TRUNCATE_NONE:
                limit = self.max_tokens
                return TokenLimitExceeded(tokens=len(content) + limit - self._budget, limit=limit)
            keep = max(self._budget - prompt_tokens, 0)
            if mode == wire.TRUNCATE_START:
                content = content[:prompt_tokens] + content[len(content) - keep :]
            else:
                content = content[: prompt_tokens + keep]
        # sentence-transformers leaves the leading special token out of pooling with the prompt.
        pooling_start = (
            0 if self.include_prompt or not prompt_tokens else len(self._prefix) + prompt_tokens
        )
        return Encoded(self._prefix + content + self._suffix, pooling_start, truncated)


def _special_tokens(tokenizer: Tokenizer) -> tuple[list[int], list[int]]:
    """The ids the post-processor puts before and after a single sequence ([CLS] .. [SEP])."""
    probe = "hello"
    bare = tokenizer.encode(probe, add_special_tokens=False).ids
    full = tokenizer.encode(probe).ids
    for start in range(len(full) - len(bare) + 1):
        if full[start : start + len(bare)] == bare:
            return full[:start], full[start + len(bare) :]
    raise ValueError("cannot locate the special tokens around a single sequence")


def padded_length(longest: int, *, limit: int) -> int:
    return min(-(-longest // PAD_MULTIPLE) * PAD_MULTIPLE, limit)


def pad(
    encoded: list[Encoded], *, length: int, pad_id: int, pooling_mask: bool
) -> dict[str, np.ndarray]:
    """Right-pad to `length`: input_ids, attention_mask and, if asked, pooling_mask (int64)."""
    rows = len(encoded)
    input_ids = np.full((rows, length), pad_id, dtype=np.int64)
    attention_mask = np.zeros((rows, length), dtype=np.int64)
    for row, item in enumerate(encoded):
        n = len(item.ids)
        input_ids[row, :n] = item.ids
        attention_mask[row, :n] = 1
    features = {wire.INPUT_IDS: input_ids, wire.ATTENTION_MASK: attention_mask}
    if pooling_mask:
        # Only a graph that leaves the instruction out of its mean takes one.
        features[wire.POOLING_MASK] = np.zeros((rows, length), dtype=np.int64)
        for row, item in enumerate(encoded):
            features[wire.POOLING_MASK][row, item.pooling_start : len(item.ids)] = 1
    return features
