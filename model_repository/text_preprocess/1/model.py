"""Triton shell around tokenization.py: one execute() pads all the texts it gets to one length."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils
import wire
from counting import TOKEN_KINDS, DeferredCounters
from tokenization import TextTokenizer, TokenLimitExceeded, pad, padded_length


def _strings(request, tensor: wire.Tensor) -> list[str]:
    values = pb_utils.get_input_tensor_by_name(request, tensor.name).as_numpy()
    return [value.decode("utf-8") for value in values.reshape(-1)]


def _invalid(message: str):
    return pb_utils.TritonError(message, pb_utils.TritonError.INVALID_ARG)


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        params = {key: value["string_value"] for key, value in config["parameters"].items()}
        folder = Path(args["model_repository"]) / args["model_version"]
        self.tokenizer = TextTokenizer.from_file(
            str(folder / params[wire.P_TOKENIZER_FILE]),
            max_tokens=int(params[wire.P_MAX_TOKENS]),
            instruction_template=params[wire.P_INSTRUCTION_TEMPLATE],
            include_prompt=params[wire.P_INCLUDE_PROMPT] == wire.TRUE,
        )
        self.pad_id = int(params[wire.P_PAD_ID])
        self.pad_to_max_tokens = params[wire.P_PAD_TO_MAX_TOKENS] == wire.TRUE
        self.feature_names = params[wire.P_TOKEN_FEATURES].split(",")
        self.pooling_mask = wire.POOLING_MASK in self.feature_names
        # What a native onnxruntime tower computes: the padded tensors handed on as they are.
        self.token_counts = DeferredCounters(
            pb_utils.MetricFamily(
                name="epithre_preprocess_token_positions_total",
                description="Token positions handed to the encoder: real tokens or padding",
                kind=pb_utils.MetricFamily.COUNTER,
            ),
            {kind: {"kind": kind} for kind in TOKEN_KINDS},
        )

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
            texts = _strings(request, wire.TEXT)
            instructions = _strings(request, wire.INSTRUCTION)
            modes = _strings(request, wire.TRUNCATE)
        except UnicodeDecodeError:
            return _invalid(
                f"{wire.TEXT.name}, {wire.INSTRUCTION.name} and {wire.TRUNCATE.name} must be UTF-8"
            )
        if any(mode not in wire.TRUNCATE_MODES for mode in modes):
            return _invalid(f"{wire.TRUNCATE.name} must be one of {wire.TRUNCATE_MODES}")
        items = self.tokenizer.encode_batch(texts, instructions, modes)
        for row, item in enumerate(items):
            if isinstance(item, TokenLimitExceeded):
                details = {"tokens": item.tokens, "limit": item.limit}
                return _invalid(
                    wire.ItemError(wire.TOKEN_LIMIT, item=row, details=details).encode()
                )
        return items

    def _response(self, items: list, length: int):
        features = pad(items, length=length, pad_id=self.pad_id, pooling_mask=self.pooling_mask)
        real = sum(len(e.ids) for e in items)
        self.token_counts.add(real=real, padding=len(items) * length - real)
        outputs = [pb_utils.Tensor(name, features[name]) for name in self.feature_names]
        tokens = np.array([[len(e.ids)] for e in items], dtype=np.int32)
        truncated = np.array([[e.truncated] for e in items], dtype=np.bool_)
        outputs.append(pb_utils.Tensor(wire.TOKENS.name, tokens))
        outputs.append(pb_utils.Tensor(wire.TRUNCATED.name, truncated))
        return pb_utils.InferenceResponse(output_tensors=outputs)

    def finalize(self) -> None:
        self.token_counts.close()
