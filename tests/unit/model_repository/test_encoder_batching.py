"""The tower's regrouping of merged requests by token length."""

from __future__ import annotations

import numpy as np
from batching import length_chunks, row_chunks, stack_ragged


def test_ragged_requests_stack_right_padded_with_zeros():
    stacked = stack_ragged([np.array([[7, 8, 9]]), np.array([[5], [6]])])
    np.testing.assert_array_equal(stacked, [[7, 8, 9], [5, 0, 0], [6, 0, 0]])


def test_chunks_group_rows_of_similar_length_and_cut_to_their_longest():
    lengths = np.array([30, 2, 29, 3])
    chunks = list(length_chunks(lengths, chunk_rows=2))
    assert [sorted(c.rows.tolist()) for c in chunks] == [[1, 3], [0, 2]]
    assert [c.width for c in chunks] == [3, 30]


def test_every_row_lands_in_exactly_one_chunk():
    lengths = np.random.default_rng(0).integers(1, 256, size=37)
    rows = np.concatenate([c.rows for c in length_chunks(lengths, chunk_rows=16)])
    assert sorted(rows.tolist()) == list(range(37))


def test_fixed_shape_rows_are_chunked_in_order_without_cutting():
    chunks = list(row_chunks(5, chunk_rows=2))
    assert [c.rows.tolist() for c in chunks] == [[0, 1], [2, 3], [4]]
    assert {c.width for c in chunks} == {None}
