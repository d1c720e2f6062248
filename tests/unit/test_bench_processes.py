"""CPU time read from /proc (bench/processes.py)."""

from __future__ import annotations

import subprocess
import sys
import time

from bench.processes import cpu_seconds


def test_cpu_seconds_counts_what_a_process_computed_and_not_what_it_slept() -> None:
    # Half a second of computing, then a line, then sleep until killed.
    busy = (
        "import time\nend = time.process_time() + 0.5\nwhile time.process_time() < end: pass\n"
        "print(flush=True)\ntime.sleep(60)"
    )
    child = subprocess.Popen([sys.executable, "-c", busy], stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None
        child.stdout.readline()
        computed = cpu_seconds([child.pid])
        time.sleep(0.5)
        slept = cpu_seconds([child.pid]) - computed
    finally:
        child.kill()
        child.wait()
    assert computed >= 0.5
    assert slept < 0.1
    assert cpu_seconds([child.pid]) == 0.0  # gone
