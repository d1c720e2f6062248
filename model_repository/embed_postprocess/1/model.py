"""Triton shell around vectors.py: pooling (when the graph does not pool), Matryoshka, L2.

Shared by the text and the image ensembles, so both modalities are cut and scaled alike, and
both name the build that computed them (FINGERPRINT) in every answer.
"""

from __future__ import annotations

import json

import numpy as np
import triton_python_backend_utils as pb_utils
import wire
from vectors import pool, truncate_and_normalize


def _input(request, name: str):
    return pb_utils.get_input_tensor_by_name(request, name).as_numpy()


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        params = {key: value["string_value"] for key, value in config["parameters"].items()}
        self.pooling = params[wire.P_POOLING]
        self.pools = params[wire.P_POOL_TOKENS] == wire.TRUE
        self.fingerprint = params[wire.P_FINGERPRINT].encode()

    def execute(self, requests: list) -> list:
        return [self._one(request) for request in requests]

    def _one(self, request):
        if self.pools:
            embeddings = pool(
                _input(request, wire.TOKEN_EMBEDDINGS),
                _input(request, wire.POOLING_MASK),
                self.pooling,
            )
        else:
            embeddings = _input(request, wire.POOLED_EMBEDDING)
        try:
            # The gateway sends one value per request, repeated for every row.
            dimensions = int(_input(request, wire.DIMENSIONS.name).reshape(-1)[0])
            vectors = truncate_and_normalize(embeddings, dimensions)
        except ValueError as error:
            invalid = pb_utils.TritonError(str(error), pb_utils.TritonError.INVALID_ARG)
            return pb_utils.InferenceResponse(error=invalid)
        build = np.full((len(vectors), 1), self.fingerprint, dtype=np.object_)
        tensors = [
            pb_utils.Tensor(wire.EMBEDDING.name, vectors),
            pb_utils.Tensor(wire.FINGERPRINT.name, build),
        ]
        return pb_utils.InferenceResponse(output_tensors=tensors)
