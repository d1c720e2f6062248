from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from gateway.files.lines import LineTooLong, numbered_lines


async def stream(chunks: list[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def lines(chunks: list[bytes], **options: int) -> list[tuple[int, bytes]]:
    async def collect() -> list[tuple[int, bytes]]:
        return [numbered async for numbered in numbered_lines(stream(chunks), **options)]

    return asyncio.run(collect())


def test_lines_are_numbered_from_one_across_chunk_boundaries():
    assert lines([b'{"a"', b':1}\n{"b":2}\n', b"\n", b"last"]) == [
        (1, b'{"a":1}'),
        (2, b'{"b":2}'),
        (3, b""),
        (4, b"last"),
    ]


def test_a_final_newline_ends_the_last_line_and_adds_none():
    assert lines([b"one\ntwo\n"]) == [(1, b"one"), (2, b"two")]
    assert lines([]) == []


def test_a_carriage_return_stays_on_its_line():
    assert lines([b"one\r\ntwo\r\n"]) == [(1, b"one\r"), (2, b"two\r")]


def test_a_line_split_over_many_chunks_is_joined():
    assert lines([b"x"] * 1000 + [b"\n"]) == [(1, b"x" * 1000)]


def test_a_line_over_the_cap_stops_the_reader_naming_it():
    with pytest.raises(LineTooLong) as refused:
        lines([b"ok\n", b"y" * 6, b"y" * 6, b"\n"], max_line_bytes=10)
    assert (refused.value.number, refused.value.limit) == (2, 10)


def test_a_complete_line_over_the_cap_in_one_chunk_is_refused():
    with pytest.raises(LineTooLong) as refused:
        lines([b"ok\n" + b"z" * 11 + b"\n"], max_line_bytes=10)
    assert refused.value.number == 2
