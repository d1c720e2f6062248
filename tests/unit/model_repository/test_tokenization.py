"""text_preprocess's pure tokenization: instruction, token-level truncation sides, padding."""

from __future__ import annotations

import numpy as np
import pytest
from tokenization import PAD_MULTIPLE, TextTokenizer, TokenLimitExceeded, pad, padded_length

from runner.stack import DEFAULT_REPOSITORY

TOKENIZER = DEFAULT_REPOSITORY / "text_preprocess" / "1" / "tokenizer" / "tokenizer.json"
CLS, SEP = 101, 102


@pytest.fixture(scope="module")
def tokenizer() -> TextTokenizer:
    return TextTokenizer.from_file(str(TOKENIZER), max_tokens=16)


def words(n: int, word: str = "cat") -> str:
    return " ".join([word] * n)


def test_short_text_is_wrapped_in_special_tokens_and_not_truncated(tokenizer):
    (item,) = tokenizer.encode_batch(["hello world"], [""], ["END"])
    assert item.ids[0] == CLS and item.ids[-1] == SEP
    assert len(item.ids) == 4
    assert not item.truncated


def test_end_keeps_the_head_and_start_keeps_the_tail(tokenizer):
    text = f"{words(10, 'cat')} {words(10, 'dog')}"
    end, start = tokenizer.encode_batch([text, text], ["", ""], ["END", "START"])
    cat, dog = (tokenizer._tokenizer.token_to_id(w) for w in ("cat", "dog"))
    assert end.ids == [CLS, *[cat] * 10, *[dog] * 4, SEP]
    assert start.ids == [CLS, *[cat] * 4, *[dog] * 10, SEP]
    assert end.truncated and start.truncated


def test_truncation_never_cuts_the_instruction_or_special_tokens(tokenizer):
    (item,) = tokenizer.encode_batch([words(30, "dog")], ["find cats"], ["START"])
    find, cats = (tokenizer._tokenizer.token_to_id(w) for w in ("find", "cats"))
    assert item.ids[:3] == [CLS, find, cats]
    assert item.ids[-1] == SEP
    assert len(item.ids) == 16


def test_none_over_the_token_limit_is_an_error_with_the_count(tokenizer):
    short, long = tokenizer.encode_batch(["kucing", words(20)], ["", ""], ["NONE", "NONE"])
    assert not isinstance(short, TokenLimitExceeded)
    assert isinstance(long, TokenLimitExceeded)
    assert (long.tokens, long.limit) == (22, 16)


def test_instruction_is_left_out_of_pooling_when_the_model_says_so():
    excluding = TextTokenizer.from_file(str(TOKENIZER), max_tokens=16, include_prompt=False)
    (item,) = excluding.encode_batch(["dog"], ["find cats"], ["END"])
    assert item.pooling_start == 3  # [CLS] find cats are not pooled; dog [SEP] are
    features = pad([item], length=8, pad_id=0, pooling_mask=True)
    assert features["pooling_mask"].tolist() == [[0, 0, 0, 1, 1, 0, 0, 0]]
    assert features["attention_mask"].tolist() == [[1, 1, 1, 1, 1, 0, 0, 0]]


def test_padding_reaches_a_common_multiple_capped_at_the_limit():
    assert padded_length(3, limit=256) == PAD_MULTIPLE
    assert padded_length(PAD_MULTIPLE + 1, limit=256) == 2 * PAD_MULTIPLE
    assert padded_length(250, limit=256) == 256


def test_pad_writes_int64_features_of_one_shape(tokenizer):
    items = tokenizer.encode_batch(["a", "a b c"], ["", ""], ["END", "END"])
    features = pad(items, length=16, pad_id=0, pooling_mask=True)
    assert {name: array.shape for name, array in features.items()} == {
        name: (2, 16) for name in ("input_ids", "attention_mask", "pooling_mask")
    }
    assert all(array.dtype == np.int64 for array in features.values())
    assert features["attention_mask"].sum(axis=1).tolist() == [3, 5]


def test_pad_leaves_out_the_pooling_mask_when_the_graph_takes_none(tokenizer):
    items = tokenizer.encode_batch(["a"], [""], ["END"])
    assert list(pad(items, length=16, pad_id=0, pooling_mask=False)) == [
        "input_ids",
        "attention_mask",
    ]
