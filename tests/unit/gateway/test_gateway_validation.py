from __future__ import annotations

import pytest
from gateway_fakes import FACTS

from gateway import Settings
from gateway.errors import APIError
from gateway.protocol import EmbeddingRequest, Limits
from gateway.validation import TOKEN_IDS, parse_request, request_type

REQUEST = request_type(Limits.of(Settings(), FACTS))


def parse(**fields: object) -> EmbeddingRequest:
    return parse_request({"model": "epithre-embed", **fields}, REQUEST)


def refused(**fields: object) -> APIError:
    with pytest.raises(APIError) as info:
        parse(**fields)
    return info.value


def test_defaults_fill_every_optional_field_in_contract_order():
    request = parse(input="kucing")
    assert request.model_dump() == {
        "model": "epithre-embed",
        "input": ("kucing",),
        "dimensions": 384,
        "instruction": "",
        "truncate": "END",
        "encoding_format": "float",
        "user": None,
    }
    assert request.char_truncated == (False,)


def test_char_truncated_is_never_read_from_the_body():
    request = parse(input="kucing", char_truncated=[True], _char_truncated=[True])
    assert request.char_truncated == (False,)


def test_texts_are_never_in_the_repr():
    assert "kucing" not in repr(parse(input="kucing"))


def test_null_optional_fields_mean_their_defaults():
    request = parse(
        input=["a"],
        dimensions=None,
        instruction=None,
        truncate=None,
        encoding_format=None,
        user=None,
    )
    assert (request.dimensions, request.instruction, request.truncate) == (384, "", "END")
    assert request.encoding_format == "float"


def test_unknown_top_level_fields_are_ignored():
    assert parse(input="a", stream=True, extra={"x": 1}).input == ("a",)


def test_body_must_be_a_json_object():
    with pytest.raises(APIError) as info:
        parse_request(["a"], REQUEST)
    assert (info.value.status, info.value.param) == (400, None)


@pytest.mark.parametrize("model", [None, "gpt-4", 1])
def test_wrong_model_is_400_naming_model(model):
    error = refused(model=model, input="a")
    assert (error.status, error.param, error.code) == (400, "model", "model_not_found")
    assert error.message == f"model must be 'epithre-embed', got {model!r}"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "input must not be empty"),
        ([], "input must not be an empty array"),
        (None, "input must be a string or an array of strings"),
        (3, "input must be a string or an array of strings"),
        ({"text": "a"}, "input must be a string or an array of strings"),
    ],
)
def test_empty_or_mistyped_input_is_400_naming_input(value, message):
    error = refused(input=value)
    assert (error.status, error.param, error.message) == (400, "input", message)


def test_missing_input_is_400_naming_input():
    with pytest.raises(APIError) as info:
        parse_request({"model": "epithre-embed"}, REQUEST)
    assert (info.value.status, info.value.param) == (400, "input")


ITEM_TYPE = 'input[1] must be a string or an image object ({"type": "image", ...})'


@pytest.mark.parametrize(
    ("value", "param", "message"),
    [
        ([""], "input[0]", "input[0] must not be empty"),
        (["a", ""], "input[1]", "input[1] must not be empty"),
        (["a", 3], "input[1]", ITEM_TYPE),
        (["a", None], "input[1]", ITEM_TYPE),
        (["a", True], "input[1]", ITEM_TYPE),
        (["a", {"text": "b"}], "input[1]", ITEM_TYPE),
    ],
)
def test_bad_item_is_400_naming_its_index(value, param, message):
    error = refused(input=value)
    assert (error.status, error.param, error.message) == (400, param, message)


def test_token_id_array_is_400_telling_to_send_strings():
    error = refused(input=[101, 2023, 102])
    assert (error.status, error.param, error.message) == (400, "input", TOKEN_IDS)
    assert "check_embedding_ctx_length=False" in error.message


def test_array_of_token_id_arrays_is_400_naming_the_item():
    error = refused(input=[[101, 2023, 102]])
    assert (error.status, error.param, error.message) == (400, "input[0]", TOKEN_IDS)


@pytest.mark.parametrize(
    "image",
    [
        {"type": "image", "image": "iVBORw0KGgo="},
        {"type": "image", "image_url": "data:image/png;base64,iVBORw0KGgo="},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
    ],
)
def test_image_item_on_a_text_only_model_is_400_naming_it(image):
    error = refused(input=["a", image])
    assert (error.status, error.param) == (400, "input[1]")
    assert error.message == (
        "input[1]: image input is not supported by epithre-embed, which embeds text only"
    )


def test_more_than_64_texts_is_400_and_64_pass():
    assert len(parse(input=["a"] * 64).input) == 64
    error = refused(input=["a"] * 65)
    assert (error.status, error.param) == (400, "input")
    assert error.message == "input has 65 text items; at most 64 are allowed"


def test_dimensions_above_native_is_400_naming_the_native_size():
    error = refused(input="a", dimensions=1024)
    assert (error.status, error.param) == (400, "dimensions")
    assert error.message == (
        "dimensions must be an integer from 1 to 384, the native dimension of epithre-embed; "
        "got 1024"
    )


@pytest.mark.parametrize("value", [0, -1, 385, True, 64.0, "64", [64]])
def test_dimensions_must_be_a_json_integer_in_range(value):
    error = refused(input="a", dimensions=value)
    assert (error.status, error.param) == (400, "dimensions")


@pytest.mark.parametrize("value", [1, 64, 384])
def test_dimensions_in_range_are_kept(value):
    assert parse(input="a", dimensions=value).dimensions == value


def test_instruction_is_kept_up_to_2000_chars_and_400_above():
    assert parse(input="a", instruction="q" * 2000).instruction == "q" * 2000
    error = refused(input="a", instruction="q" * 2001)
    assert (error.status, error.param) == (400, "instruction")
    assert error.message == "instruction has 2001 characters; at most 2000 are allowed"


def test_non_string_instruction_is_400():
    assert refused(input="a", instruction=["q"]).param == "instruction"


@pytest.mark.parametrize("value", ["end", "LEFT", 1])
def test_unknown_truncate_is_400(value):
    error = refused(input="a", truncate=value)
    assert (error.status, error.param) == (400, "truncate")
    assert error.message == f"truncate must be one of END, START, NONE; got {value!r}"


def test_truncate_end_keeps_the_first_10000_chars():
    text = "h" + "x" * 9_999 + "t"
    request = parse(input=["short", text], truncate="END")
    assert request.input[1] == text[:10_000] and request.input[1][0] == "h"
    assert request.char_truncated == (False, True)


def test_truncate_start_keeps_the_last_10000_chars():
    text = "h" + "x" * 9_999 + "t"
    request = parse(input=[text], truncate="START")
    assert request.input[0] == text[-10_000:] and request.input[0][-1] == "t"
    assert request.char_truncated == (True,)


def test_text_of_exactly_10000_chars_is_not_truncated():
    request = parse(input=["x" * 10_000], truncate="NONE")
    assert request.char_truncated == (False,)


def test_truncate_none_with_a_long_text_is_422_naming_the_item():
    error = refused(input=["a", "x" * 10_001], truncate="NONE")
    assert (error.status, error.param) == (422, "input[1]")
    assert error.message == (
        "input[1] has 10001 characters, above the limit of 10000 (truncate is NONE)"
    )


@pytest.mark.parametrize("value", ["float", "base64", "int8", "uint8", "binary", "ubinary"])
def test_encoding_format_is_one_of_the_six(value):
    assert parse(input="a", encoding_format=value).encoding_format == value


def test_other_encoding_format_is_400():
    error = refused(input="a", encoding_format="int4")
    assert (error.status, error.param) == (400, "encoding_format")
    assert error.message == (
        "encoding_format must be one of float, base64, int8, uint8, binary, ubinary; got 'int4'"
    )


def test_non_string_user_is_400():
    assert parse(input="a", user="u-1").user == "u-1"
    assert refused(input="a", user=5).param == "user"


def test_limits_come_from_settings():
    settings = Settings(max_text_items=2, max_text_chars=5, max_instruction_chars=3)
    limited = request_type(Limits.of(settings, FACTS))
    request = parse_request(
        {"model": "epithre-embed", "input": ["abcdefg", "b"], "instruction": "abc"}, limited
    )
    assert request.input == ("abcde", "b")
    with pytest.raises(APIError):
        parse_request({"model": "epithre-embed", "input": ["a"] * 3}, limited)
