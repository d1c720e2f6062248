"""An ONNX tower (text or image) through ONNX Runtime, for servers with only the Python backend.

Production runs the same model.onnx on Triton's native onnxruntime backend
(configs/production.pbtxt); this model exists for the local tritonserver bundled in pytriton.
image_encoder/1/model.py is a link to this file: the tower's tensors come from its config.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils
import wire
from batching import Chunk, length_chunks, row_chunks, stack_ragged
from counting import TOKEN_KINDS, DeferredCounters
from occupancy import Occupancy, occupancy_file


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        params = {key: value["string_value"] for key, value in config["parameters"].items()}
        path = Path(args["model_repository"]) / args["model_version"] / params[wire.P_ONNX_FILE]

        def session(threads: int, *, spinning: str) -> ort.InferenceSession:
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.add_session_config_entry("session.intra_op.allow_spinning", spinning)
            # Threads spin only within a run: once it ends the cores go to the other stubs.
            options.add_session_config_entry("session.force_spinning_stop", "1")
            return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

        threads = int(params[wire.P_INTRA_OP_THREADS])
        self.session = session(threads, spinning=params[wire.P_ALLOW_SPINNING])
        self.chunk_rows = int(params[wire.P_CHUNK_ROWS])
        # Chunks run side by side on one session (ORT allows concurrent runs and releases the
        # GIL): single-threaded runs on every core beat one run spread over the cores.
        parallel = int(params[wire.P_PARALLEL_CHUNKS]) or os.cpu_count() or 1
        # One chunk at a time runs in the stub's own thread: a hand-off to a pool thread and back
        # cost a lone request 0.5 ms.
        self.pool = ThreadPoolExecutor(parallel) if parallel > 1 else None
        # Under load every instance computes and one thread each fills the cores; a chunk that
        # finds no other instance computing, a lone request's, gets the solo session's threads.
        solo_threads = int(params[wire.P_SOLO_THREADS]) or len(os.sched_getaffinity(0))
        solo = parallel == 1 and solo_threads > threads
        # The solo session has the cores to itself while it runs, so its threads spin between
        # operators rather than sleep: a lone short text's run took 1 ms less.
        self.solo_session = session(solo_threads, spinning="1") if solo else self.session
        self.occupancy = Occupancy(occupancy_file(config["name"], os.getppid()))
        self.input_names = [i["name"] for i in config["input"]]
        self.output_name = config["output"][0]["name"]
        # Rows with token lengths are cut to their own; "" keeps every row's shape (images, and
        # token-level outputs, which must keep the request's length).
        self.length_input = params[wire.P_LENGTH_INPUT]
        self.token_counts = DeferredCounters(
            pb_utils.MetricFamily(
                name="epithre_encoder_token_positions_total",
                description="Token positions the encoder computed: real tokens or padding",
                kind=pb_utils.MetricFamily.COUNTER,
            ),
            {kind: {"model": config["name"], "kind": kind} for kind in TOKEN_KINDS},
        )

    def execute(self, requests: list) -> list:
        per_request = [
            [pb_utils.get_input_tensor_by_name(r, name).as_numpy() for name in self.input_names]
            for r in requests
        ]
        # Token inputs allow ragged batching: requests of different lengths arrive together.
        features = {
            name: stack_ragged([arrays[i] for arrays in per_request])
            if self.length_input
            else np.concatenate([arrays[i] for arrays in per_request])
            for i, name in enumerate(self.input_names)
        }
        with self.occupancy.computing():
            embeddings = self._run(features)
        responses, start = [], 0
        for arrays in per_request:
            rows = arrays[0].shape[0]
            tensor = pb_utils.Tensor(self.output_name, embeddings[start : start + rows])
            responses.append(pb_utils.InferenceResponse(output_tensors=[tensor]))
            start += rows
        return responses

    def _run(self, features: dict[str, np.ndarray]) -> np.ndarray:
        count = len(features[self.input_names[0]])
        if self.length_input:
            lengths = features[self.length_input].sum(axis=1)
            chunks = list(length_chunks(lengths, chunk_rows=self.chunk_rows))
            real = int(lengths.sum())
            padding = sum(len(c.rows) * c.width for c in chunks) - real
            self.token_counts.add(real=real, padding=padding)
        else:
            chunks = list(row_chunks(count, chunk_rows=self.chunk_rows))
        run = partial(self._run_chunk, features)
        parts = list(self.pool.map(run, chunks)) if self.pool else [run(c) for c in chunks]
        embeddings = np.empty((count, *parts[0].shape[1:]), dtype=parts[0].dtype)
        for chunk, part in zip(chunks, parts, strict=True):
            embeddings[chunk.rows] = part
        return embeddings

    def _run_chunk(self, features: dict[str, np.ndarray], chunk: Chunk) -> np.ndarray:
        columns = slice(None) if chunk.width is None else slice(0, chunk.width)
        inputs = {name: value[chunk.rows, columns] for name, value in features.items()}
        session = self.solo_session if self.occupancy.count() == 1 else self.session
        return session.run([self.output_name], inputs)[0]

    def finalize(self) -> None:
        if self.pool:
            self.pool.shutdown()
        self.occupancy.close()
        self.token_counts.close()
