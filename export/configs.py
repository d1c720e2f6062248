"""The one generator of every config.pbtxt, built as model_config.proto messages."""

from __future__ import annotations

import json

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from export import tensors
from export.facts import ImageFacts, ServedFacts, TextFacts
from model_repository import wire

QUEUE_SIZE = 512
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
    wire.P_PARALLEL_CHUNKS: 1,
    wire.P_INTRA_OP_THREADS: 1,
    # A lone request has the cores to itself: its chunks run on all of them.
    wire.P_SOLO_THREADS: 0,
    # Spinning threads burn the cores that tokenization and the gateway share with the tower.
    wire.P_ALLOW_SPINNING: 0,
}
# Rows per ONNX Runtime run. Text rows are cut to their chunk's longest row, and a single-threaded
# run costs about the same per token at 1, 2 or 4 rows: so two rows, which pad 2.5% of the parts
# of a 64-text request where four padded 7% (docs/tuning.md). Image rows are all one shape.
TEXT_CHUNK_ROWS = 2
IMAGE_CHUNK_ROWS = 4


# What embed_postprocess answers, in both ensembles: the vectors and the build that made them.
POSTPROCESS_OUTPUTS = (wire.EMBEDDING, wire.FINGERPRINT)
# What text_preprocess reads and hands on besides the token features: the ensemble's text
# tensors less DIMENSIONS and POSTPROCESS_OUTPUTS, which only embed_postprocess reads and writes.
TEXT_PREPROCESS_INPUTS = tuple(t for t in wire.TEXT_INPUTS if t != wire.DIMENSIONS)
TEXT_PREPROCESS_OUTPUTS = tuple(t for t in wire.TEXT_OUTPUTS if t not in POSTPROCESS_OUTPUTS)


def _tensor(message_type, t: wire.Tensor):
    return message_type(name=t.name, data_type=mc.DataType.Value(t.config_type), dims=list(t.dims))


def _batched(
    name: str,
    *,
    backend: str,
    inputs: list[wire.Tensor],
    outputs: list[wire.Tensor],
    queue_delay_us: int | None,
    max_batch_size: int = wire.MAX_TEXT_BATCH,
) -> mc.ModelConfig:
    """`queue_delay_us=None`: no dynamic batcher, each request runs as it comes."""
    config = mc.ModelConfig(name=name, backend=backend, max_batch_size=max_batch_size)
    config.input.extend(_tensor(mc.ModelInput, t) for t in inputs)
    config.output.extend(_tensor(mc.ModelOutput, t) for t in outputs)
    if queue_delay_us is None:
        return config
    config.dynamic_batching.max_queue_delay_microseconds = queue_delay_us
    config.dynamic_batching.priority_levels = wire.PRIORITY_LEVELS
    config.dynamic_batching.default_priority_level = wire.PRIORITY_REALTIME
    policy = config.dynamic_batching.default_queue_policy
    # A bounded queue (at each priority level) turns overload into an immediate error the gateway
    # answers with 429.
    policy.max_queue_size = QUEUE_SIZE
    # A request waits no longer than the timeout it names (the gateway's remaining deadline),
    # then is rejected unrun: a tower's time goes to callers still waiting (wire.QUEUE_TIMEOUT_US).
    policy.timeout_action = mc.ModelQueuePolicy.REJECT
    policy.default_timeout_microseconds = wire.QUEUE_TIMEOUT_US
    policy.allow_timeout_override = True
    return config


def _parameters(config: mc.ModelConfig, values: dict[str, object]) -> mc.ModelConfig:
    for key, value in values.items():
        config.parameters[key].string_value = str(value)
    return config


def text_preprocess(text: TextFacts) -> mc.ModelConfig:
    config = _batched(
        wire.TEXT_PREPROCESS,
        backend="python",
        inputs=list(TEXT_PREPROCESS_INPUTS),
        outputs=[*tensors.token_features(text.preprocess_features), *TEXT_PREPROCESS_OUTPUTS],
        queue_delay_us=None,  # see NO_BATCHER
    )
    return _parameters(
        config,
        {
            wire.P_TOKENIZER_FILE: "tokenizer/tokenizer.json",
            wire.P_MAX_TOKENS: text.max_tokens,
            wire.P_INSTRUCTION_TEMPLATE: text.instruction_template,
            wire.P_INCLUDE_PROMPT: wire.flag(text.include_prompt),
            wire.P_PAD_ID: text.pad_id,
            wire.P_PAD_TO_MAX_TOKENS: wire.flag(text.pad_to_max_tokens),
            wire.P_TOKEN_FEATURES: ",".join(text.preprocess_features),
        },
    )


def _tower(
    name: str,
    inputs: list[wire.Tensor],
    output: wire.Tensor,
    *,
    backend: str,
    max_batch_size: int,
    length_input: str,
    chunk_rows: int,
) -> mc.ModelConfig:
    """`backend="python"` runs ONNX Runtime in a Python model; `"onnxruntime"` is Triton's own.

    `length_input` is the input whose row sums are token lengths (see TextFacts.length_input).
    """
    config = _batched(
        name,
        backend=backend,
        inputs=inputs,
        outputs=[output],
        queue_delay_us=0,
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
    return _parameters(
        config,
        {
            wire.P_ONNX_FILE: "model.onnx",
            **PYTHON_TOWER_TUNING,
            wire.P_LENGTH_INPUT: length_input,
            wire.P_CHUNK_ROWS: chunk_rows,
        },
    )


def text_encoder(text: TextFacts, *, backend: str) -> mc.ModelConfig:
    return _tower(
        wire.TEXT_ENCODER,
        tensors.token_features(text.encoder_inputs),
        text.encoder_output,
        backend=backend,
        max_batch_size=wire.MAX_TEXT_BATCH,
        length_input=text.length_input,
        chunk_rows=TEXT_CHUNK_ROWS,
    )


def image_preprocess(image: ImageFacts) -> mc.ModelConfig:
    config = _batched(
        wire.IMAGE_PREPROCESS,
        backend="python",
        inputs=[wire.IMAGE],
        outputs=[tensors.pixel_values(image.image_size)],
        queue_delay_us=None,  # see NO_BATCHER
        max_batch_size=wire.MAX_IMAGE_BATCH,
    )
    # Decoding and resizing is most of an image's cost and runs one image at a time in a stub:
    # one instance per core lets images decode side by side (docs/tuning.md).
    config.instance_group.add(kind=mc.ModelInstanceGroup.KIND_CPU, count=IMAGE_DECODERS)
    return _parameters(
        config,
        {
            wire.P_PROCESSOR: json.dumps(image.processor, sort_keys=True),
            wire.P_MAX_PIXELS: image.max_pixels,
        },
    )


def image_encoder(image: ImageFacts, *, backend: str) -> mc.ModelConfig:
    return _tower(
        wire.IMAGE_ENCODER,
        [tensors.pixel_values(image.image_size)],
        wire.Tensor(wire.IMAGE_EMBEDDING, "FP32", (image.dimension,)),
        backend=backend,
        max_batch_size=wire.MAX_IMAGE_BATCH,
        length_input="",  # pixels keep their shape
        chunk_rows=IMAGE_CHUNK_ROWS,
    )


def _postprocess_inputs(text: TextFacts) -> list[wire.Tensor]:
    """A pooled embedding, or token states and the mask to pool them by; then DIMENSIONS."""
    if text.pooled_in_graph:
        pooled = wire.Tensor(wire.POOLED_EMBEDDING, "FP32", (text.dimension,))
        return [pooled, wire.DIMENSIONS]
    return [text.encoder_output, *tensors.token_features([wire.POOLING_MASK]), wire.DIMENSIONS]


def embed_postprocess(text: TextFacts, served: ServedFacts) -> mc.ModelConfig:
    config = _batched(
        wire.POSTPROCESS,
        backend="python",
        inputs=_postprocess_inputs(text),
        outputs=list(POSTPROCESS_OUTPUTS),
        queue_delay_us=None,  # see NO_BATCHER
    )
    return _parameters(
        config,
        {
            wire.P_NATIVE_DIMENSION: text.dimension,
            wire.P_POOLING: text.pooling,
            wire.P_POOL_TOKENS: wire.flag(not text.pooled_in_graph),
            # The same fingerprint embed_text states: each answer names the build that computed it.
            wire.P_FINGERPRINT: served.fingerprint,
        },
    )


def _ensemble(
    name: str,
    inputs: tuple[wire.Tensor, ...],
    outputs: tuple[wire.Tensor, ...],
    *,
    max_batch_size: int,
    steps: list[tuple[str, dict[str, str], dict[str, str]]],
) -> mc.ModelConfig:
    """`steps`: (model, input_map, output_map) in order, each map keyed by the model's names."""
    config = mc.ModelConfig(name=name, platform="ensemble", max_batch_size=max_batch_size)
    config.input.extend(_tensor(mc.ModelInput, t) for t in inputs)
    config.output.extend(_tensor(mc.ModelOutput, t) for t in outputs)
    for model, input_map, output_map in steps:
        config.ensemble_scheduling.step.add(
            model_name=model, model_version=-1, input_map=input_map, output_map=output_map
        )
    return config


def _same(names) -> dict[str, str]:
    return {n: n for n in names}


def embed_text(text: TextFacts, served: ServedFacts) -> mc.ModelConfig:
    encoded = text.encoder_output.name
    postprocess_inputs = _same(t.name for t in _postprocess_inputs(text))
    if text.pooled_in_graph:
        postprocess_inputs[wire.POOLED_EMBEDDING] = encoded
    preprocess_outputs = (*text.preprocess_features, *(t.name for t in TEXT_PREPROCESS_OUTPUTS))
    config = _ensemble(
        wire.ENSEMBLE_TEXT,
        wire.TEXT_INPUTS,
        wire.TEXT_OUTPUTS,
        max_batch_size=wire.MAX_TEXT_BATCH,
        steps=[
            (
                wire.TEXT_PREPROCESS,
                _same(t.name for t in TEXT_PREPROCESS_INPUTS),
                _same(preprocess_outputs),
            ),
            (wire.TEXT_ENCODER, _same(text.encoder_inputs), _same((encoded,))),
            (wire.POSTPROCESS, postprocess_inputs, _same(t.name for t in POSTPROCESS_OUTPUTS)),
        ],
    )
    return _parameters(
        config,
        {
            wire.P_SERVED_MODEL_NAME: wire.SERVED_MODEL_NAME,
            wire.P_NATIVE_DIMENSION: served.native_dimension,
            wire.P_MAX_TOKENS: served.max_tokens,
            wire.P_FINGERPRINT: served.fingerprint,
            wire.P_MODALITIES: ",".join(served.modalities),
        },
    )


def embed_image() -> mc.ModelConfig:
    postprocess_inputs = {
        wire.POOLED_EMBEDDING: wire.IMAGE_EMBEDDING,
        wire.DIMENSIONS.name: wire.DIMENSIONS.name,
    }
    return _ensemble(
        wire.ENSEMBLE_IMAGE,
        wire.IMAGE_INPUTS,
        wire.IMAGE_OUTPUTS,
        max_batch_size=wire.MAX_IMAGE_BATCH,
        steps=[
            (wire.IMAGE_PREPROCESS, _same((wire.IMAGE.name,)), _same((wire.PIXEL_VALUES,))),
            (wire.IMAGE_ENCODER, _same((wire.PIXEL_VALUES,)), _same((wire.IMAGE_EMBEDDING,))),
            (wire.POSTPROCESS, postprocess_inputs, _same(t.name for t in POSTPROCESS_OUTPUTS)),
        ],
    )


def to_pbtxt(config: mc.ModelConfig) -> str:
    return text_format.MessageToString(config)
