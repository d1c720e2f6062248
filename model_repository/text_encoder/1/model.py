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
from batching import length_chunks, stack_ragged


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        params = {key: value["string_value"] for key, value in config["parameters"].items()}
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(params["intra_op_threads"])
        options.add_session_config_entry(
            "session.intra_op.allow_spinning", params["allow_spinning"]
        )
        self.chunk_rows = int(params["chunk_rows"])
        path = Path(args["model_repository"]) / args["model_version"] / params["onnx_file"]
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_names = [i["name"] for i in config["input"]]
        self.output_name = config["output"][0]["name"]
        # Token-level outputs must keep the request's length; pooled ones can be cut shorter.
        self.trim_padding = (
            "attention_mask" in self.input_names and len(config["output"][0]["dims"]) == 1
        )
        # The family must outlive its metrics, so the model holds on to it.
        self.token_positions = pb_utils.MetricFamily(
            name="epithre_encoder_token_positions_total",
            description="Token positions the encoder computed: real tokens or padding",
            kind=pb_utils.MetricFamily.COUNTER,
        )
        labels = {"model": config["name"]}
        self.real_tokens = self.token_positions.Metric(labels={**labels, "kind": "real"})
        self.padding_tokens = self.token_positions.Metric(labels={**labels, "kind": "padding"})

    def execute(self, requests: list) -> list:
        per_request = [
            [pb_utils.get_input_tensor_by_name(r, name).as_numpy() for name in self.input_names]
            for r in requests
        ]
        # Token inputs allow ragged batching: requests of different lengths arrive together.
        features = {
            name: stack_ragged([arrays[i] for arrays in per_request])
            if self.trim_padding
            else np.concatenate([arrays[i] for arrays in per_request])
            for i, name in enumerate(self.input_names)
        }
        embeddings = self._run(features)
        responses, start = [], 0
        for arrays in per_request:
            rows = arrays[0].shape[0]
            tensor = pb_utils.Tensor(self.output_name, embeddings[start : start + rows])
            responses.append(pb_utils.InferenceResponse(output_tensors=[tensor]))
            start += rows
        return responses

    def _run(self, features: dict[str, np.ndarray]) -> np.ndarray:
        if not self.trim_padding:
            return self.session.run([self.output_name], features)[0]
        lengths = features["attention_mask"].sum(axis=1)
        embeddings = None
        computed = 0
        for chunk in length_chunks(lengths, chunk_rows=self.chunk_rows):
            inputs = {name: value[chunk.rows, : chunk.width] for name, value in features.items()}
            (part,) = self.session.run([self.output_name], inputs)
            if embeddings is None:
                embeddings = np.empty((len(lengths), *part.shape[1:]), dtype=part.dtype)
            embeddings[chunk.rows] = part
            computed += len(chunk.rows) * chunk.width
        real = int(lengths.sum())
        self.real_tokens.increment(real)
        self.padding_tokens.increment(computed - real)
        return embeddings
