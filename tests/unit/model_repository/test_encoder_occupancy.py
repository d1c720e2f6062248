"""The count of tower instances computing, shared between their stub processes."""

from __future__ import annotations

import multiprocessing
import os
import signal
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


def test_instances_in_one_process_hold_a_slot_each(tmp_path: Path):
    path = tmp_path / "tower.occupancy"
    first, second = Occupancy(path), Occupancy(path)
    with first.computing(), second.computing():
        assert first.count() == 2


def _hold_a_slot_while_computing(path: Path, started) -> None:
    occupancy = Occupancy(path)
    with occupancy.computing():
        started.set()
        os.kill(os.getpid(), signal.SIGKILL)


def test_a_killed_instance_s_slot_is_taken_over_and_no_longer_counted(tmp_path: Path):
    path = tmp_path / "tower.occupancy"
    context = multiprocessing.get_context("fork")
    started = context.Event()
    killed = context.Process(target=_hold_a_slot_while_computing, args=(path, started))
    killed.start()
    killed.join(10)
    assert started.is_set()
    restarted = Occupancy(path)
    assert restarted.count() == 0
    with restarted.computing():
        assert restarted.count() == 1
