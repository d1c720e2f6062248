from __future__ import annotations

from collections.abc import Iterator

import pytest
from PIL import Image


@pytest.fixture(autouse=True)
def _restore_pillow_limit() -> Iterator[None]:
    # create_app sets Pillow's process-wide pixel limit; other test folders expect theirs back.
    saved = Image.MAX_IMAGE_PIXELS
    yield
    Image.MAX_IMAGE_PIXELS = saved
