"""The count of tower instances computing, shared between their stub processes."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from occupancy import Occupancy, occupancy_file


def test_the_count_includes_the_caller_while_it_computes_and_drops_after(tmp_path: Path):
    occupancy = Occupancy(tmp_path / "tower.occupancy")
    assert occupancy.count() == 0
    with occupancy.computing():
        assert occupancy.count() == 1
    assert occupancy.count() == 0


def _compute_until_told(path: Path, started, stop) -> None:
    with Occupancy(path).computing():
        started.set()
        stop.wait(10)


def test_another_process_computing_on_the_same_file_is_counted(tmp_path: Path):
    path = tmp_path / "tower.occupancy"
    context = multiprocessing.get_context("fork")
    started, stop = context.Event(), context.Event()
    other = context.Process(target=_compute_until_told, args=(path, started, stop))
    other.start()
    try:
        assert started.wait(10)
        occupancy = Occupancy(path)
        with occupancy.computing():
            assert occupancy.count() == 2
        assert occupancy.count() == 1
    finally:
        stop.set()
        other.join(10)
    assert occupancy.count() == 0


def test_each_server_and_model_has_its_own_file():
    names = {occupancy_file(m, pid) for m in ("text_encoder", "image_encoder") for pid in (7, 8)}
    assert len(names) == 4


def test_closing_removes_the_file(tmp_path: Path):
    path = tmp_path / "tower.occupancy"
    Occupancy(path).close()
    assert not path.exists()
