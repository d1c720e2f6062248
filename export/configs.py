"""The one generator of every config.pbtxt, built as model_config.proto messages."""

from __future__ import annotations

import json

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from export import tensors
from export.facts import ImageFacts, ServedFacts, TextFacts
from export.tensors import Tensor

STRING = "TYPE_STRING"
QUEUE_SIZE = 512
MAX_IMAGES_PER_BATCH = 16
IMAGE_DECODERS = 2
# NO_BATCHER: the models whose executions take a few milliseconds (tokenizing, decoding,
# normalizing) run each request as it comes. Behind Triton's dynamic batcher, requests that
# reached them while their instance was busy sometimes waited for the batcher's default wake-up,
# 500 ms, when no later request came to wake it: a burst of 10 concurrent texts took 700 ms
# instead of 220. The towers keep the batcher: merging is their job, and their executions are
# long enough that it was never seen to miss one.
# How the Python tower runs ONNX Runtime; docs/tuning.md says how to choose them.
PYTHON_TOWER_INSTANCES = 2
PYTHON_TOWER_TUNING = {
    # Chunks of rows run side by side on one ONNX Runtime thread each. One at a time: the two
    # instances fill the cores (the gateway sends a request's texts as two parts), and more
    # threads than cores cost 20% more CPU per text.
    "parallel_chunks": 1,
    "intra_op_threads": 1,
    # Spinning threads burn the cores that tokenization and the gateway share with the tower.
    "allow_spinning": 0,
    "chunk_rows": 4,
}


def _tensor(message_type, t: Tensor):
    return message_type(name=t.name, data_type=mc.DataType.Value(t.data_type), dims=list(t.dims))


def _batched(
    name: str,
    *,
    backend: str,
    inputs: list[Tensor],
    outputs: list[Tensor],
    queue_delay_us: int | None,
    max_batch_size: int = tensors.MAX_BATCH_SIZE,
) -> mc.ModelConfig:
    """`queue_delay_us=None`: no dynamic batcher, each request runs as it comes."""
    config = mc.ModelConfig(name=name, backend=backend, max_batch_size=max_batch_size)
    config.input.extend(_tensor(mc.ModelInput, t) for t in inputs)
    config.output.extend(_tensor(mc.ModelOutput, t) for t in outputs)
    if queue_delay_us is None:
        return config
    config.dynamic_batching.max_queue_delay_microseconds = queue_delay_us
    # A bounded queue turns overload into an immediate error the gateway answers with 429.
    config.dynamic_batching.default_queue_policy.max_queue_size = QUEUE_SIZE
    return config


def _parameters(config: mc.ModelConfig, values: dict[str, object]) -> mc.ModelConfig:
    for key, value in values.items():
        config.parameters[key].string_value = str(value)
    return config


def _string(name: str) -> Tensor:
    return Tensor(name, STRING, (1,))


def _dimensions() -> Tensor:
    return Tensor(tensors.DIMENSIONS, "TYPE_INT32", (1,))


def text_preprocess(text: TextFacts) -> mc.ModelConfig:
    outputs = [
        *tensors.token_features(text.preprocess_features),
        Tensor(tensors.TOKENS, "TYPE_INT32", (1,)),
        Tensor(tensors.TRUNCATED, "TYPE_BOOL", (1,)),
    ]
    inputs = [_string(n) for n in (tensors.TEXT, tensors.INSTRUCTION, tensors.TRUNCATE)]
    config = _batched(
        tensors.TEXT_PREPROCESS,
        backend="python",
        inputs=inputs,
        outputs=outputs,
        queue_delay_us=None,  # see NO_BATCHER
    )
    return _parameters(
        config,
        {
            "tokenizer_file": "tokenizer/tokenizer.json",
            "max_tokens": text.max_tokens,
            "instruction_template": text.instruction_template,
            "include_prompt": str(text.include_prompt).lower(),
            "pad_id": text.pad_id,
            "pad_to_max_tokens": str(text.pad_to_max_tokens).lower(),
        },
    )


def _tower(
    name: str, inputs: list[Tensor], output: Tensor, *, backend: str, max_batch_size: int
) -> mc.ModelConfig:
    """`backend="python"` runs ONNX Runtime in a Python model; `"onnxruntime"` is Triton's own."""
    config = _batched(
        name,
        backend=backend,
        inputs=inputs,
        outputs=[output],
        queue_delay_us=4000,
        max_batch_size=max_batch_size,
    )
    if backend == "onnxruntime":
        # Triton's onnxruntime backend merges only requests of equal shapes: text_preprocess
        # pads to length buckets so that concurrent requests can share a bucket.
        config.default_model_filename = "model.onnx"
        config.instance_group.add(kind=mc.ModelInstanceGroup.KIND_GPU, count=1)
        return config
    # The Python tower takes each request's tensors apart, so requests of any length can merge.
    for tensor in config.input:
        tensor.allow_ragged_batch = -1 in tensor.dims
    # A second instance takes what arrives while the first computes. With one, the batcher
    # sometimes slept its default 500 ms instead of starting when the instance came free.
    config.instance_group.add(kind=mc.ModelInstanceGroup.KIND_CPU, count=PYTHON_TOWER_INSTANCES)
    return _parameters(config, {"onnx_file": "model.onnx", **PYTHON_TOWER_TUNING})


def text_encoder(text: TextFacts, *, backend: str) -> mc.ModelConfig:
    inputs = tensors.token_features(text.encoder_inputs)
    return _tower(
        tensors.TEXT_ENCODER,
        inputs,
        text.encoder_output,
        backend=backend,
        max_batch_size=tensors.MAX_BATCH_SIZE,
    )


def image_preprocess(image: ImageFacts) -> mc.ModelConfig:
    config = _batched(
        tensors.IMAGE_PREPROCESS,
        backend="python",
        inputs=[_string(tensors.IMAGE)],
        outputs=[tensors.pixel_values(image.image_size)],
        queue_delay_us=None,  # see NO_BATCHER
        max_batch_size=MAX_IMAGES_PER_BATCH,
    )
    # Decoding and resizing is most of an image's cost and runs one image at a time in a stub:
    # one instance per core lets images decode side by side (docs/tuning.md).
    config.instance_group.add(kind=mc.ModelInstanceGroup.KIND_CPU, count=IMAGE_DECODERS)
    return _parameters(
        config,
        {
            "processor": json.dumps(image.processor, sort_keys=True),
            "max_pixels": image.max_pixels,
        },
    )


def image_encoder(image: ImageFacts, *, backend: str) -> mc.ModelConfig:
    output = Tensor(tensors.IMAGE_EMBEDDING, "TYPE_FP32", (image.dimension,))
    return _tower(
        tensors.IMAGE_ENCODER,
        [tensors.pixel_values(image.image_size)],
        output,
        backend=backend,
        max_batch_size=MAX_IMAGES_PER_BATCH,
    )


def _postprocess_inputs(text: TextFacts) -> list[Tensor]:
    """A pooled embedding, or token states and the mask to pool them by; then DIMENSIONS."""
    if text.pooled_in_graph:
        return [Tensor(tensors.POOLED_EMBEDDING, "TYPE_FP32", (text.dimension,)), _dimensions()]
    mask = Tensor(tensors.POOLING_MASK, "TYPE_INT64", (-1,))
    return [text.encoder_output, mask, _dimensions()]


def embed_postprocess(text: TextFacts) -> mc.ModelConfig:
    config = _batched(
        tensors.POSTPROCESS,
        backend="python",
        inputs=_postprocess_inputs(text),
        outputs=[Tensor(tensors.EMBEDDING, "TYPE_FP32", (-1,))],
        queue_delay_us=None,  # see NO_BATCHER
    )
    return _parameters(config, {"native_dimension": text.dimension, "pooling": text.pooling})


def _ensemble(
    name: str, inputs: list[Tensor], outputs: list[Tensor], *, max_batch_size: int
) -> mc.ModelConfig:
    config = mc.ModelConfig(name=name, platform="ensemble", max_batch_size=max_batch_size)
    config.input.extend(_tensor(mc.ModelInput, t) for t in inputs)
    config.output.extend(_tensor(mc.ModelOutput, t) for t in outputs)
    return config


def _same(names) -> dict[str, str]:
    return {n: n for n in names}


def embed_text(text: TextFacts, served: ServedFacts) -> mc.ModelConfig:
    config = _ensemble(
        tensors.ENSEMBLE_TEXT,
        [
            *(_string(n) for n in (tensors.TEXT, tensors.INSTRUCTION, tensors.TRUNCATE)),
            _dimensions(),
        ],
        [
            Tensor(tensors.EMBEDDING, "TYPE_FP32", (-1,)),
            Tensor(tensors.TOKENS, "TYPE_INT32", (1,)),
            Tensor(tensors.TRUNCATED, "TYPE_BOOL", (1,)),
        ],
        max_batch_size=tensors.MAX_BATCH_SIZE,
    )
    encoded = text.encoder_output.name
    postprocess_inputs = _same(t.name for t in _postprocess_inputs(text))
    if text.pooled_in_graph:
        postprocess_inputs[tensors.POOLED_EMBEDDING] = encoded
    steps = config.ensemble_scheduling.step
    steps.add(
        model_name=tensors.TEXT_PREPROCESS,
        model_version=-1,
        input_map=_same((tensors.TEXT, tensors.INSTRUCTION, tensors.TRUNCATE)),
        output_map=_same((*text.preprocess_features, tensors.TOKENS, tensors.TRUNCATED)),
    )
    steps.add(
        model_name=tensors.TEXT_ENCODER,
        model_version=-1,
        input_map=_same(text.encoder_inputs),
        output_map=_same((encoded,)),
    )
    steps.add(
        model_name=tensors.POSTPROCESS,
        model_version=-1,
        input_map=postprocess_inputs,
        output_map=_same((tensors.EMBEDDING,)),
    )
    return _parameters(
        config,
        {
            "served_model_name": tensors.SERVED_MODEL_NAME,
            "native_dimension": served.native_dimension,
            "max_tokens": served.max_tokens,
            "fingerprint": served.fingerprint,
            "modalities": ",".join(served.modalities),
        },
    )


def embed_image() -> mc.ModelConfig:
    config = _ensemble(
        tensors.ENSEMBLE_IMAGE,
        [_string(tensors.IMAGE), _dimensions()],
        [Tensor(tensors.EMBEDDING, "TYPE_FP32", (-1,))],
        max_batch_size=MAX_IMAGES_PER_BATCH,
    )
    steps = config.ensemble_scheduling.step
    steps.add(
        model_name=tensors.IMAGE_PREPROCESS,
        model_version=-1,
        input_map=_same((tensors.IMAGE,)),
        output_map=_same((tensors.PIXEL_VALUES,)),
    )
    steps.add(
        model_name=tensors.IMAGE_ENCODER,
        model_version=-1,
        input_map=_same((tensors.PIXEL_VALUES,)),
        output_map=_same((tensors.IMAGE_EMBEDDING,)),
    )
    steps.add(
        model_name=tensors.POSTPROCESS,
        model_version=-1,
        input_map={
            tensors.POOLED_EMBEDDING: tensors.IMAGE_EMBEDDING,
            tensors.DIMENSIONS: tensors.DIMENSIONS,
        },
        output_map=_same((tensors.EMBEDDING,)),
    )
    return config


def to_pbtxt(config: mc.ModelConfig) -> str:
    return text_format.MessageToString(config)
