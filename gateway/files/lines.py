"""A file's lines, numbered from 1, read from a stream of chunks without holding the file."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator


class LineTooLong(ValueError):
    """A line over the reader's cap: the reader stops there instead of holding it whole."""

    def __init__(self, number: int, limit: int) -> None:
        super().__init__(f"line {number} is longer than {limit} bytes")
        self.number = number
        self.limit = limit


async def numbered_lines(
    chunks: AsyncIterable[bytes], *, max_line_bytes: int | None = None
) -> AsyncIterator[tuple[int, bytes]]:
    """`(number, line)` for each line, without its `\\n` (a `\\r` before it stays: JSON
    parsers take it as whitespace); a last line without `\\n` counts, an empty end does not.

    Usage: `async for number, line in numbered_lines(chunks, max_line_bytes=1 << 20): ...`
    """
    number = 0
    # The unfinished line, in pieces: joining once at its end keeps a long line linear.
    pending: list[bytes] = []
    pending_bytes = 0
    async for chunk in chunks:
        *complete, rest = chunk.split(b"\n")
        for piece in complete:
            number += 1
            line = b"".join((*pending, piece)) if pending else piece
            pending, pending_bytes = [], 0
            _check(line, number, max_line_bytes)
            yield number, line
        if rest:
            pending.append(rest)
            pending_bytes += len(rest)
            if max_line_bytes is not None and pending_bytes > max_line_bytes:
                raise LineTooLong(number + 1, max_line_bytes)
    if pending:
        yield number + 1, b"".join(pending)


def _check(line: bytes, number: int, limit: int | None) -> None:
    if limit is not None and len(line) > limit:
        raise LineTooLong(number, limit)
