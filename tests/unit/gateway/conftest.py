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


@pytest.fixture(autouse=True)
def _own_working_directory(tmp_path, monkeypatch) -> None:
    # A gateway keeps its database and files under EPITHRE_DATA_DIR, data/ of the working
    # directory by default: each test gets its own, so none sees another's files or writes into
    # the checkout.
    monkeypatch.chdir(tmp_path)
