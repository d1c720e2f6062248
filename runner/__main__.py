"""`python -m runner`: the local stack for `make serve`: tritonserver, then the gateway.

Ctrl-C or SIGTERM stops the gateway first (it drains), then tritonserver and its Python stubs.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path

from runner.triton import LocalTriton, TritonPorts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runner", description=__doc__)
    parser.add_argument("--model-repository", type=Path, default=Path("model_repository"))
    parser.add_argument("--workdir", type=Path, default=Path("build/triton"))
    args = parser.parse_args(argv)
    # SIGTERM takes the same path as Ctrl-C so both stop everything cleanly.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    triton = LocalTriton(
        args.model_repository,
        ports=TritonPorts(),
        workdir=args.workdir,
        log_path=args.workdir / "tritonserver.log",
    )
    gateway: subprocess.Popen[bytes] | None = None
    try:
        triton.start()
        print(f"tritonserver starting (log: {triton.log_path})", file=sys.stderr, flush=True)
        triton.wait_ready()
        env = {**os.environ, "EPITHRE_TRITON_URL": triton.grpc_url}
        gateway = subprocess.Popen([sys.executable, "-m", "gateway"], env=env)
        return gateway.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        if gateway is not None and gateway.poll() is None:
            gateway.send_signal(signal.SIGTERM)
            gateway.wait(timeout=60)
        triton.stop()


if __name__ == "__main__":
    sys.exit(main())
