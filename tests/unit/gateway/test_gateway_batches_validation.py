from __future__ import annotations

import orjson
import pytest

from gateway.batches.objects import BatchError
from gateway.batches.validation import (
    MAX_LISTED_ERRORS,
    InputCheck,
    LineRequest,
    check_line,
    estimated_tokens,
)


def line(custom_id: object = "a", **fields: object) -> bytes:
    value = {"custom_id": custom_id, "method": "POST", "url": "/v1/embeddings"}
    value["body"] = {"model": "epithre-embed", "input": "hello"}
    return orjson.dumps(value | fields)


def problems(check: InputCheck) -> list[tuple[str, int | None, str | None]]:
    return [(e.code, e.line, e.param) for e in check.finish()]


def test_a_valid_line_keeps_its_custom_id_and_its_body_as_json() -> None:
    checked = check_line(3, line("doc-1"), max_tokens=256)
    assert isinstance(checked, LineRequest)
    assert (checked.line, checked.custom_id) == (3, "doc-1")
    assert orjson.loads(checked.body) == {"model": "epithre-embed", "input": "hello"}


@pytest.mark.parametrize(
    ("raw", "code", "param"),
    [
        (b'{"custom_id": "a", "method": ', "invalid_json_line", None),
        (b"[1, 2]", "invalid_json_line", None),
        (line(method="GET"), "invalid_method", "method"),
        (line(url="/v1/chat/completions"), "invalid_url", "url"),
        (line(custom_id=7), "invalid_request", "custom_id"),
        (line(custom_id=""), "invalid_request", "custom_id"),
        (line(body=["hello"]), "invalid_request", "body"),
    ],
)
def test_a_bad_line_is_named_with_openai_s_code(raw: bytes, code: str, param: str | None) -> None:
    checked = check_line(5, raw, max_tokens=256)
    assert isinstance(checked, BatchError)
    assert (checked.code, checked.param, checked.line) == (code, param, 5)


@pytest.mark.parametrize("missing", ["custom_id", "method", "url", "body"])
def test_each_missing_field_is_named(missing: str) -> None:
    value = orjson.loads(line())
    del value[missing]
    checked = check_line(1, orjson.dumps(value), max_tokens=256)
    assert isinstance(checked, BatchError)
    assert (checked.code, checked.param) == ("missing_required_parameter", missing)
    assert checked.message == f"Missing required parameter: '{missing}'."


def test_a_repeated_custom_id_names_the_second_line() -> None:
    check = InputCheck(max_tokens=256)
    assert check.add(1, line("x")) is not None
    assert check.add(2, line("y")) is not None
    assert check.add(3, line("x")) is None
    assert problems(check) == [("duplicate_custom_id", 3, "custom_id")]


def test_every_problem_is_named_with_its_line() -> None:
    check = InputCheck(max_tokens=256)
    for number, raw in enumerate([line("a"), b"not json", line("b", url="/v1/x"), line("a")], 1):
        check.add(number, raw)
    assert problems(check) == [
        ("invalid_json_line", 2, None),
        ("invalid_url", 3, "url"),
        ("duplicate_custom_id", 4, "custom_id"),
    ]
    assert check.failed


def test_blank_lines_are_skipped_but_keep_their_numbers() -> None:
    check = InputCheck(max_tokens=256)
    assert check.add(1, b"") is None
    assert check.add(2, b"  \r") is None
    request = check.add(3, line("a"))
    assert request is not None and request.line == 3
    assert (check.requests, check.finish()) == (1, [])


def test_a_file_without_requests_fails_as_empty() -> None:
    check = InputCheck(max_tokens=256)
    check.add(1, b"")
    assert problems(check) == [("empty_file", None, None)]


def test_one_request_over_the_maximum_names_the_first_line_past_it() -> None:
    check = InputCheck(max_tokens=256, max_requests=3)
    for number in range(1, 7):
        check.add(number, line(f"id-{number}"))
    [error] = check.finish()
    assert (error.code, error.line) == ("too_many_requests", 4)
    assert "at most 3 requests" in error.message
    assert check.requests == 6


def test_past_the_listed_errors_one_more_counts_the_rest() -> None:
    check = InputCheck(max_tokens=256)
    for number in range(1, MAX_LISTED_ERRORS + 6):
        check.add(number, b"{")
    errors = check.finish()
    assert len(errors) == MAX_LISTED_ERRORS + 1
    assert errors[-1].code == "too_many_errors"
    assert errors[-1].message.startswith("5 more lines have problems")


def test_estimated_tokens_count_characters_over_four_and_a_fixed_cost_per_image() -> None:
    text = "x" * 400  # 100 tokens + 2 special
    assert estimated_tokens({"input": text}, max_tokens=256) == 102
    assert estimated_tokens({"input": [text, text]}, max_tokens=256) == 204
    assert estimated_tokens(
        {"input": [text, {"type": "image", "image": "AA=="}]}, max_tokens=256
    ) == (102 + 64)
    assert estimated_tokens({"input": "x" * 10_000}, max_tokens=256) == 256
    assert estimated_tokens({"input": 5}, max_tokens=256) == 0


def test_the_check_sums_the_estimate_of_the_valid_lines() -> None:
    check = InputCheck(max_tokens=256)
    check.add(1, line("a", body={"input": "x" * 40}))
    check.add(2, line("b", body={"input": ["x" * 40, "y" * 80]}))
    assert check.estimated_tokens == 12 + 12 + 22
