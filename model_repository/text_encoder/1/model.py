"""An ONNX tower (text or image) through ONNX Runtime, for servers with only the Python backend.

Production runs the same model.onnx on Triton's native onnxruntime backend
(configs/production.pbtxt); this model exists for the local tritonserver bundled in pytriton.
image_encoder/1/model.py is a link to this file: the tower's tensors come from its config.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

# On a CPU a batch costs what its longest row costs: rows sorted by length and run in chunks
# this tall, each cut to its own longest row, waste little on padding.
CHUNK_ROWS = 16


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        params = {key: value["string_value"] for key, value in config["parameters"].items()}
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(params["intra_op_threads"])
        path = Path(args["model_repository"]) / args["model_version"] / params["onnx_file"]
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_names = [i["name"] for i in config["input"]]
        self.output_name = config["output"][0]["name"]
        # Token-level outputs must keep the request's length; pooled ones can be cut shorter.
        self.trim_padding = (
            "attention_mask" in self.input_names and len(config["output"][0]["dims"]) == 1
        )

    def execute(self, requests: list) -> list:
        # Triton merges only requests of equal shapes, so the batch concatenates cleanly.
        features = {
            name: np.concatenate(
                [pb_utils.get_input_tensor_by_name(r, name).as_numpy() for r in requests]
            )
            for name in self.input_names
        }
        embeddings = self._run(features)
        responses, start = [], 0
        for request in requests:
            rows = (
                pb_utils.get_input_tensor_by_name(request, self.input_names[0]).as_numpy().shape[0]
            )
            tensor = pb_utils.Tensor(self.output_name, embeddings[start : start + rows])
            responses.append(pb_utils.InferenceResponse(output_tensors=[tensor]))
            start += rows
        return responses

    def _run(self, features: dict[str, np.ndarray]) -> np.ndarray:
        if not self.trim_padding:
            return self.session.run([self.output_name], features)[0]
        lengths = features["attention_mask"].sum(axis=1)
        order = np.argsort(lengths, kind="stable")
        embeddings = None
        for start in range(0, len(order), CHUNK_ROWS):
            rows = order[start : start + CHUNK_ROWS]
            width = max(int(lengths[rows].max()), 1)
            chunk = {name: value[rows, :width] for name, value in features.items()}
            (part,) = self.session.run([self.output_name], chunk)
            if embeddings is None:
                embeddings = np.empty((len(order), *part.shape[1:]), dtype=part.dtype)
            embeddings[rows] = part
        return embeddings
