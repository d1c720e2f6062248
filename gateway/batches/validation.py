"""The checks of a batch's input file, line by line as it streams, with OpenAI's error codes.

A line must be a JSON object with a unique `custom_id`, `method` POST, `url` /v1/embeddings and
an object `body`; the file holds 1 to 50,000 of them (blank lines are skipped). A problem fails
the whole batch at validation, `errors.data` naming each problem and its line. The body itself is
checked only when the line runs, by the realtime endpoint's own validation: a body it refuses
goes to the error file with its status and error, and the other lines complete.

Usage:
    check = InputCheck()
    async for number, raw in files.open_lines(owner, file_id):
        request = check.add(number, raw)
    errors = check.finish()
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from gateway.admission import IMAGE_TOKENS, text_cost
from gateway.batches.objects import ENDPOINT, BatchError

MAX_REQUESTS = 50_000
# errors.data lists this many problems, then one line counting the rest: a file of a million bad
# lines must not make a batch object of a hundred megabytes.
MAX_LISTED_ERRORS = 100
REQUIRED = ("custom_id", "method", "url", "body")


@dataclass(frozen=True)
class LineRequest:
    """A valid line: its body (JSON) is answered as a POST /v1/embeddings request."""

    line: int
    custom_id: str
    body: bytes
    estimated_tokens: int


def estimated_tokens(body: dict[str, object], *, max_tokens: int) -> int:
    """The line's work in the unit admission control counts (characters / 4 per text, a fixed
    cost per image), for the key's budget of queued batch tokens; a malformed `input` costs 0,
    since the line will be refused without reaching the model."""
    items = body.get("input")
    if isinstance(items, str):
        items = [items]
    if not isinstance(items, list):
        return 0
    cost = 0.0
    for item in items:
        if isinstance(item, str):
            cost += text_cost(item, max_tokens=max_tokens)
        elif isinstance(item, dict):
            cost += IMAGE_TOKENS
    return int(cost)


def check_line(number: int, raw: bytes, *, max_tokens: int) -> LineRequest | BatchError:
    """One line of the input file checked on its own (duplicates are `InputCheck`'s)."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return BatchError(
            code="invalid_json_line",
            message="This line is not parseable as valid JSON.",
            line=number,
        )
    if not isinstance(value, dict):
        return BatchError(
            code="invalid_json_line", message="This line is not a JSON object.", line=number
        )
    for name in REQUIRED:
        if name not in value:
            return BatchError(
                code="missing_required_parameter",
                message=f"Missing required parameter: '{name}'.",
                param=name,
                line=number,
            )
    custom_id, body = value["custom_id"], value["body"]
    if not isinstance(custom_id, str) or not custom_id:
        return BatchError(
            code="invalid_request",
            message="custom_id must be a non-empty string.",
            param="custom_id",
            line=number,
        )
    if value["method"] != "POST":
        return BatchError(
            code="invalid_method",
            message=f"The method of this request must be POST, got {value['method']!r}.",
            param="method",
            line=number,
        )
    if value["url"] != ENDPOINT:
        return BatchError(
            code="invalid_url",
            message=f"The URL provided for this request does not match the batch endpoint "
            f"{ENDPOINT}.",
            param="url",
            line=number,
        )
    if not isinstance(body, dict):
        return BatchError(
            code="invalid_request",
            message="body must be a JSON object: the request to POST /v1/embeddings.",
            param="body",
            line=number,
        )
    return LineRequest(
        line=number,
        custom_id=custom_id,
        body=orjson.dumps(body),
        estimated_tokens=estimated_tokens(body, max_tokens=max_tokens),
    )


class InputCheck:
    """The checks across the lines of one file: duplicates, the count, the errors listed."""

    def __init__(self, *, max_tokens: int, max_requests: int = MAX_REQUESTS) -> None:
        self._max_tokens = max_tokens
        self._max_requests = max_requests
        self._seen: set[str] = set()
        self._errors: list[BatchError] = []
        self._unlisted = 0
        self.requests = 0
        self.estimated_tokens = 0

    def add(self, number: int, raw: bytes) -> LineRequest | None:
        """The line's request, or None for a blank or a bad line (a bad one is noted)."""
        if not raw.strip():
            return None
        self.requests += 1
        if self.requests > self._max_requests:
            if self.requests == self._max_requests + 1:
                self.note(
                    BatchError(
                        code="too_many_requests",
                        message=f"A batch takes at most {self._max_requests} requests; this "
                        f"line is request {self._max_requests + 1}.",
                        line=number,
                    )
                )
            return None
        checked = check_line(number, raw, max_tokens=self._max_tokens)
        if isinstance(checked, LineRequest) and checked.custom_id in self._seen:
            checked = BatchError(
                code="duplicate_custom_id",
                message="The custom_id for this request is a duplicate of another request. The "
                "custom_id parameter must be unique for each request in a batch.",
                param="custom_id",
                line=number,
            )
        if isinstance(checked, BatchError):
            self.note(checked)
            return None
        self._seen.add(checked.custom_id)
        self.estimated_tokens += checked.estimated_tokens
        return checked

    @property
    def failed(self) -> bool:
        return bool(self._errors)

    def note(self, error: BatchError) -> None:
        """A problem found outside the lines' own checks (the reader's)."""
        if len(self._errors) < MAX_LISTED_ERRORS:
            self._errors.append(error)
        else:
            self._unlisted += 1

    def finish(self) -> list[BatchError]:
        """Every problem found, in line order; none when the batch can run."""
        errors = list(self._errors)
        if self._unlisted:
            errors.append(
                BatchError(
                    code="too_many_errors",
                    message=f"{self._unlisted} more lines have problems; the first "
                    f"{MAX_LISTED_ERRORS} are listed.",
                )
            )
        if self.requests == 0:
            errors.append(BatchError(code="empty_file", message="The input file has no requests."))
        return errors
