"""`python -m runner`: the local stack for `make serve`: tritonserver, then the gateway.

tritonserver runs under a supervisor: when it dies, its stubs and shared memory are removed and
it is started again on the same ports (1 s, doubling up to 30 s, between failed tries); the
gateway answers 503 meanwhile and reconnects by itself. Ctrl-C or SIGTERM stops the gateway first
(it drains), then tritonserver and its Python stubs. The gateway reads its own settings from
`EPITHRE_*` variables (EPITHRE_PORT: 8000); the runner sets EPITHRE_TRITON_URL.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

from runner.supervisor import StartFailed, Supervisor
from runner.triton import LocalTriton, TritonPorts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m runner",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model-repository", type=Path, default=Path("model_repository"))
    parser.add_argument(
        "--workdir", type=Path, default=Path("build/triton"), help="backends and tritonserver.log"
    )
    # The same ports across restarts: the gateway's channel reconnects by itself.
    defaults = TritonPorts()
    for kind in ("http", "grpc", "metrics"):
        parser.add_argument(
            f"--triton-{kind}-port",
            type=int,
            default=getattr(defaults, kind),
            help=f"tritonserver's {kind} port (default %(default)s)",
        )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # SIGTERM takes the same path as Ctrl-C so both stop everything cleanly.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    triton = LocalTriton(
        args.model_repository,
        ports=TritonPorts(
            http=args.triton_http_port, grpc=args.triton_grpc_port, metrics=args.triton_metrics_port
        ),
        workdir=args.workdir,
        log_path=args.workdir / "tritonserver.log",
    )
    supervisor = Supervisor(triton, name="tritonserver")
    gateway: subprocess.Popen[bytes] | None = None
    try:
        print(f"tritonserver starting (log: {triton.log_path})", file=sys.stderr, flush=True)
        supervisor.start()
        env = {**os.environ, "EPITHRE_TRITON_URL": triton.grpc_url}
        gateway = subprocess.Popen([sys.executable, "-m", "gateway"], env=env)
        return gateway.wait()
    except StartFailed as error:
        print(f"{error}:\n{triton.log_tail()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        if gateway is not None and gateway.poll() is None:
            gateway.send_signal(signal.SIGTERM)
            gateway.wait(timeout=60)
        supervisor.stop()


if __name__ == "__main__":
    sys.exit(main())
