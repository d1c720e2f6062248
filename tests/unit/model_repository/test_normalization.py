"""embed_postprocess's Matryoshka truncation and L2 normalization."""

from __future__ import annotations

import numpy as np
import pytest
from normalization import truncate_and_normalize


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
