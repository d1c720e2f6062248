"""embed_postprocess: pooling, Matryoshka truncation and L2 normalization."""

from __future__ import annotations

import numpy as np
import pytest
from vectors import pool, truncate_and_normalize


def test_native_dimensions_normalizes_every_row():
    vectors = truncate_and_normalize(np.array([[3.0, 4.0], [0.0, 2.0]]), 0)
    np.testing.assert_allclose(vectors, [[0.6, 0.8], [0.0, 1.0]])
    assert vectors.dtype == np.float32


def test_dimensions_keep_the_renormalized_prefix():
    vectors = truncate_and_normalize(np.array([[3.0, 4.0, 12.0]]), 2)
    np.testing.assert_allclose(vectors, [[0.6, 0.8]])


def test_a_zero_vector_stays_finite():
    assert np.isfinite(truncate_and_normalize(np.zeros((1, 4)), 0)).all()


@pytest.mark.parametrize("dimensions", [-1, 4])
def test_dimensions_outside_the_native_size_are_refused(dimensions):
    with pytest.raises(ValueError, match=r"0\.\.3"):
        truncate_and_normalize(np.ones((1, 3)), dimensions)


def test_mean_pooling_averages_only_the_masked_tokens():
    tokens = np.array([[[1.0, 0.0], [3.0, 2.0], [100.0, 100.0]]])
    np.testing.assert_allclose(pool(tokens, np.array([[1, 1, 0]]), "mean"), [[2.0, 1.0]])


def test_cls_pooling_takes_the_first_token():
    tokens = np.array([[[1.0, 0.0], [3.0, 2.0]]])
    np.testing.assert_allclose(pool(tokens, np.array([[0, 1]]), "cls"), [[1.0, 0.0]])
