"""Triton shell around vectors.py: pooling (when the graph does not pool), Matryoshka, L2.

Shared by the text and the image ensembles, so both modalities are cut and scaled alike.
"""

from __future__ import annotations

import json

import triton_python_backend_utils as pb_utils
from vectors import pool, truncate_and_normalize


def _input(request, name: str):
    return pb_utils.get_input_tensor_by_name(request, name).as_numpy()


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        self.pooling = config["parameters"]["pooling"]["string_value"]
        self.pools = any(i["name"] == "token_embeddings" for i in config["input"])

    def execute(self, requests: list) -> list:
        return [self._one(request) for request in requests]

    def _one(self, request):
        if self.pools:
            embeddings = pool(
                _input(request, "token_embeddings"), _input(request, "pooling_mask"), self.pooling
            )
        else:
            embeddings = _input(request, "pooled_embedding")
        try:
            # The gateway sends one value per request, repeated for every row.
            dimensions = int(_input(request, "DIMENSIONS").reshape(-1)[0])
            vectors = truncate_and_normalize(embeddings, dimensions)
        except ValueError as error:
            return pb_utils.InferenceResponse(error=pb_utils.TritonError(str(error)))
        return pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("EMBEDDING", vectors)])
