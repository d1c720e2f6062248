"""Triton shell around normalization.py: Matryoshka truncation and L2 norm per request."""

from __future__ import annotations

import triton_python_backend_utils as pb_utils
from normalization import truncate_and_normalize


class TritonPythonModel:
    def execute(self, requests: list) -> list:
        return [self._one(request) for request in requests]

    def _one(self, request):
        embeddings = pb_utils.get_input_tensor_by_name(request, "sentence_embedding").as_numpy()
        dimensions = pb_utils.get_input_tensor_by_name(request, "DIMENSIONS").as_numpy()
        try:
            # The gateway sends one value per request, repeated for every row.
            vectors = truncate_and_normalize(embeddings, int(dimensions.reshape(-1)[0]))
        except ValueError as error:
            return pb_utils.InferenceResponse(error=pb_utils.TritonError(str(error)))
        return pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("EMBEDDING", vectors)])
