"""Query-string and form fields checked against their pydantic declaration, the same one the
OpenAPI document shows; a bad field answers 400 with `param` naming it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from gateway.errors import InvalidRequest

M = TypeVar("M", bound=BaseModel)


def parse_params(model: type[M], values: Mapping[str, str]) -> M:
    """`model` from string values (pydantic's lax mode turns "20" into 20); the first bad field
    raises InvalidRequest naming it as the client spelled it (a field's alias).

    Usage: `query = parse_params(FileListQuery, request.query_params)`
    """
    try:
        return model.model_validate(dict(values))
    except ValidationError as exc:
        error = exc.errors()[0]
        param = ".".join(str(part) for part in error["loc"])
        raise InvalidRequest(f"{param}: {error['msg']}", param=param) from None
