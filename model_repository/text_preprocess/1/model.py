"""Triton shell around tokenization.py: one execute() pads all the texts it gets to one length."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils
from tokenization import TRUNCATE_MODES, TextTokenizer, TokenLimitExceeded, pad, padded_length


def _strings(request, name: str) -> list[str]:
    tensor = pb_utils.get_input_tensor_by_name(request, name).as_numpy()
    return [value.decode("utf-8") for value in tensor.reshape(-1)]


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        params = {key: value["string_value"] for key, value in config["parameters"].items()}
        folder = Path(args["model_repository"]) / args["model_version"]
        self.tokenizer = TextTokenizer.from_file(
            str(folder / params["tokenizer_file"]),
            max_tokens=int(params["max_tokens"]),
            instruction_template=params["instruction_template"],
            include_prompt=params["include_prompt"] == "true",
        )
        self.pad_id = int(params["pad_id"])
        self.pad_to_max_tokens = params["pad_to_max_tokens"] == "true"
        self.feature_names = [o["name"] for o in config["output"] if o["name"].islower()]
        # What a native onnxruntime tower computes: the padded tensors handed on as they are.
        # The family must outlive its metrics, so the model holds on to it.
        self.token_positions = pb_utils.MetricFamily(
            name="epithre_preprocess_token_positions_total",
            description="Token positions handed to the encoder: real tokens or padding",
            kind=pb_utils.MetricFamily.COUNTER,
        )
        self.real_tokens = self.token_positions.Metric(labels={"kind": "real"})
        self.padding_tokens = self.token_positions.Metric(labels={"kind": "padding"})

    def execute(self, requests: list) -> list:
        results = [self._encode(request) for request in requests]
        encoded = [r for r in results if not isinstance(r, pb_utils.TritonError)]
        longest = max((len(e.ids) for items in encoded for e in items), default=1)
        limit = self.tokenizer.max_tokens
        length = limit if self.pad_to_max_tokens else padded_length(longest, limit=limit)
        return [
            pb_utils.InferenceResponse(error=r)
            if isinstance(r, pb_utils.TritonError)
            else self._response(r, length)
            for r in results
        ]

    def _encode(self, request):
        try:
            texts = _strings(request, "TEXT")
            instructions = _strings(request, "INSTRUCTION")
            modes = _strings(request, "TRUNCATE")
        except UnicodeDecodeError:
            return pb_utils.TritonError("TEXT, INSTRUCTION and TRUNCATE must be UTF-8")
        if any(mode not in TRUNCATE_MODES for mode in modes):
            return pb_utils.TritonError(f"TRUNCATE must be one of {TRUNCATE_MODES}")
        items = self.tokenizer.encode_batch(texts, instructions, modes)
        for index, item in enumerate(items):
            if isinstance(item, TokenLimitExceeded):
                return pb_utils.TritonError(
                    f"TOKEN_LIMIT_EXCEEDED item={index} tokens={item.tokens} limit={item.limit}"
                )
        return items

    def _response(self, items: list, length: int):
        features = pad(items, length=length, pad_id=self.pad_id)
        real = sum(len(e.ids) for e in items)
        self.real_tokens.increment(real)
        self.padding_tokens.increment(len(items) * length - real)
        outputs = [pb_utils.Tensor(name, features[name]) for name in self.feature_names]
        tokens = np.array([[len(e.ids)] for e in items], dtype=np.int32)
        truncated = np.array([[e.truncated] for e in items], dtype=np.bool_)
        outputs.append(pb_utils.Tensor("TOKENS", tokens))
        outputs.append(pb_utils.Tensor("TRUNCATED", truncated))
        return pb_utils.InferenceResponse(output_tensors=outputs)
