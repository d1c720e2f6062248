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

    def execute(self, requests: list) -> list:
        # Triton merges only requests of equal shapes, so the batch concatenates cleanly.
        features = {
            name: np.concatenate(
                [pb_utils.get_input_tensor_by_name(r, name).as_numpy() for r in requests]
            )
            for name in self.input_names
        }
        (embeddings,) = self.session.run([self.output_name], features)
        responses, start = [], 0
        for request in requests:
            rows = (
                pb_utils.get_input_tensor_by_name(request, self.input_names[0]).as_numpy().shape[0]
            )
            tensor = pb_utils.Tensor(self.output_name, embeddings[start : start + rows])
            responses.append(pb_utils.InferenceResponse(output_tensors=[tensor]))
            start += rows
        return responses
