"""Triton shell around imaging.py: one encoded image per request -> pixel values."""

from __future__ import annotations

import json

import numpy as np
import triton_python_backend_utils as pb_utils
import wire
from imaging import InvalidImage, open_image, pixel_values
from PIL import Image


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        params = {key: value["string_value"] for key, value in config["parameters"].items()}
        self.settings = json.loads(params[wire.P_PROCESSOR])
        self.max_pixels = int(params[wire.P_MAX_PIXELS])
        # Pillow's own bomb guard at the same limit, in case a decoder is reached some other way.
        Image.MAX_IMAGE_PIXELS = self.max_pixels

    def execute(self, requests: list) -> list:
        return [self._one(request) for request in requests]

    def _one(self, request):
        images = pb_utils.get_input_tensor_by_name(request, wire.IMAGE.name).as_numpy()
        pixels = []
        for row, data in enumerate(images.reshape(-1)):
            try:
                image = open_image(bytes(data), max_pixels=self.max_pixels)
                pixels.append(pixel_values(image, self.settings))
            except InvalidImage as error:
                refused = wire.ItemError(
                    wire.INVALID_IMAGE, item=row, details={"reason": str(error)}
                )
                return pb_utils.InferenceResponse(
                    error=pb_utils.TritonError(refused.encode(), pb_utils.TritonError.INVALID_ARG)
                )
        tensor = pb_utils.Tensor(wire.PIXEL_VALUES, np.stack(pixels))
        return pb_utils.InferenceResponse(output_tensors=[tensor])
