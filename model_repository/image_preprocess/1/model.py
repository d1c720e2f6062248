"""Triton shell around imaging.py: one encoded image per request -> pixel values."""

from __future__ import annotations

import json

import numpy as np
import triton_python_backend_utils as pb_utils
from imaging import InvalidImage, open_image, pixel_values
from PIL import Image


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        params = {key: value["string_value"] for key, value in config["parameters"].items()}
        self.settings = json.loads(params["processor"])
        self.max_pixels = int(params["max_pixels"])
        # Pillow's own bomb guard at the same limit, in case a decoder is reached some other way.
        Image.MAX_IMAGE_PIXELS = self.max_pixels

    def execute(self, requests: list) -> list:
        return [self._one(request) for request in requests]

    def _one(self, request):
        images = pb_utils.get_input_tensor_by_name(request, "IMAGE").as_numpy().reshape(-1)
        try:
            pixels = np.stack(
                [
                    pixel_values(open_image(bytes(d), max_pixels=self.max_pixels), self.settings)
                    for d in images
                ]
            )
        except InvalidImage as error:
            return pb_utils.InferenceResponse(error=pb_utils.TritonError(f"INVALID_IMAGE: {error}"))
        return pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("pixel_values", pixels)])
