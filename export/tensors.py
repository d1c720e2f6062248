"""Tensor specs that depend on a checkpoint: token features of any length, pixels of its size.

Every name and dtype comes from `model_repository/wire.py`, the one declaration of the wire
contract; this module only sizes them for an export.
"""

from __future__ import annotations

from model_repository import wire


def token_features(names: list[str] | tuple[str, ...]) -> list[wire.Tensor]:
    return [wire.Tensor(name, "INT64", (-1,)) for name in names]


def pixel_values(image_size: int) -> wire.Tensor:
    return wire.Tensor(wire.PIXEL_VALUES, "FP32", (3, image_size, image_size))
