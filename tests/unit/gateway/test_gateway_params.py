from __future__ import annotations

from typing import Literal

import pytest
from pydantic import BaseModel, Field

from gateway.errors import InvalidRequest
from gateway.params import parse_params


class Query(BaseModel):
    limit: int = Field(20, ge=1, le=100)
    order: Literal["asc", "desc"] = "desc"
    seconds: int | None = Field(None, alias="expires_after[seconds]")


def test_string_values_are_cast_and_defaults_kept():
    assert parse_params(Query, {"limit": "7"}) == Query(limit=7, order="desc")


def test_a_bad_field_answers_400_naming_it():
    with pytest.raises(InvalidRequest) as refused:
        parse_params(Query, {"limit": "0", "order": "sideways"})
    assert (refused.value.status, refused.value.param) == (400, "limit")
    assert refused.value.message.startswith("limit: ")


def test_a_field_is_named_as_the_client_spells_it():
    with pytest.raises(InvalidRequest) as refused:
        parse_params(Query, {"expires_after[seconds]": "soon"})
    assert refused.value.param == "expires_after[seconds]"
