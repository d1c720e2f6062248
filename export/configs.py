"""The one generator of every config.pbtxt, built as model_config.proto messages."""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from export import tensors
from export.tensors import Tensor

STRING = "TYPE_STRING"
QUEUE_SIZE = 512


@dataclass(frozen=True)
class ModelFacts:
    """What the served model is; every value also ends up in some config's `parameters`."""

    native_dimension: int
    max_tokens: int
    fingerprint: str
    uses_token_type_ids: bool
    pooling: str
    pooled_in_graph: bool
    include_prompt: bool
    instruction_template: str
    pad_id: int


def _tensor(message_type, t: Tensor):
    return message_type(name=t.name, data_type=mc.DataType.Value(t.data_type), dims=list(t.dims))


def _batched(
    name: str, *, backend: str, inputs: list[Tensor], outputs: list[Tensor], queue_delay_us: int
) -> mc.ModelConfig:
    config = mc.ModelConfig(name=name, backend=backend, max_batch_size=tensors.MAX_BATCH_SIZE)
    config.input.extend(_tensor(mc.ModelInput, t) for t in inputs)
    config.output.extend(_tensor(mc.ModelOutput, t) for t in outputs)
    config.dynamic_batching.max_queue_delay_microseconds = queue_delay_us
    # A bounded queue turns overload into an immediate error the gateway answers with 429.
    config.dynamic_batching.default_queue_policy.max_queue_size = QUEUE_SIZE
    return config


def _parameters(config: mc.ModelConfig, values: dict[str, object]) -> mc.ModelConfig:
    for key, value in values.items():
        config.parameters[key].string_value = str(value)
    return config


def _text_inputs() -> list[Tensor]:
    return [Tensor(n, STRING, (1,)) for n in (tensors.TEXT, tensors.INSTRUCTION, tensors.TRUNCATE)]


def _encoder_inputs(facts: ModelFacts) -> list[Tensor]:
    return tensors.encoder_inputs(
        uses_token_type_ids=facts.uses_token_type_ids, pooled=facts.pooled_in_graph
    )


def _encoder_output(facts: ModelFacts) -> Tensor:
    return tensors.encoder_output(facts.native_dimension, pooled=facts.pooled_in_graph)


def _postprocess_inputs(facts: ModelFacts) -> list[Tensor]:
    """The encoder's output, the pooling mask when the graph does not pool, and DIMENSIONS."""
    pooling_mask = (
        [] if facts.pooled_in_graph else [Tensor(tensors.POOLING_MASK, "TYPE_INT64", (-1,))]
    )
    return [_encoder_output(facts), *pooling_mask, Tensor(tensors.DIMENSIONS, "TYPE_INT32", (1,))]


def text_preprocess(facts: ModelFacts) -> mc.ModelConfig:
    outputs = [
        *tensors.features(uses_token_type_ids=facts.uses_token_type_ids),
        Tensor(tensors.TOKENS, "TYPE_INT32", (1,)),
        Tensor(tensors.TRUNCATED, "TYPE_BOOL", (1,)),
    ]
    config = _batched(
        tensors.TEXT_PREPROCESS,
        backend="python",
        inputs=_text_inputs(),
        outputs=outputs,
        queue_delay_us=1000,
    )
    return _parameters(
        config,
        {
            "tokenizer_file": "tokenizer/tokenizer.json",
            "max_tokens": facts.max_tokens,
            "instruction_template": facts.instruction_template,
            "include_prompt": str(facts.include_prompt).lower(),
            "pad_id": facts.pad_id,
        },
    )


def text_encoder(facts: ModelFacts, *, backend: str) -> mc.ModelConfig:
    """`backend="python"` runs ONNX Runtime in a Python model; `"onnxruntime"` is Triton's own."""
    config = _batched(
        tensors.TEXT_ENCODER,
        backend=backend,
        inputs=_encoder_inputs(facts),
        outputs=[_encoder_output(facts)],
        queue_delay_us=4000,
    )
    if backend == "onnxruntime":
        config.default_model_filename = "model.onnx"
        config.instance_group.add(kind=mc.ModelInstanceGroup.KIND_GPU, count=1)
        return config
    return _parameters(config, {"onnx_file": "model.onnx", "intra_op_threads": 0})


def embed_postprocess(facts: ModelFacts) -> mc.ModelConfig:
    config = _batched(
        tensors.POSTPROCESS,
        backend="python",
        inputs=_postprocess_inputs(facts),
        outputs=[Tensor(tensors.EMBEDDING, "TYPE_FP32", (-1,))],
        queue_delay_us=0,
    )
    return _parameters(
        config, {"native_dimension": facts.native_dimension, "pooling": facts.pooling}
    )


def embed_text(facts: ModelFacts) -> mc.ModelConfig:
    config = mc.ModelConfig(
        name=tensors.ENSEMBLE_TEXT, platform="ensemble", max_batch_size=tensors.MAX_BATCH_SIZE
    )
    inputs = [*_text_inputs(), Tensor(tensors.DIMENSIONS, "TYPE_INT32", (1,))]
    config.input.extend(_tensor(mc.ModelInput, t) for t in inputs)
    outputs = [
        Tensor(tensors.EMBEDDING, "TYPE_FP32", (-1,)),
        Tensor(tensors.TOKENS, "TYPE_INT32", (1,)),
        Tensor(tensors.TRUNCATED, "TYPE_BOOL", (1,)),
    ]
    config.output.extend(_tensor(mc.ModelOutput, t) for t in outputs)
    features = [t.name for t in tensors.features(uses_token_type_ids=facts.uses_token_type_ids)]
    encoder_output = _encoder_output(facts).name
    steps = config.ensemble_scheduling.step
    steps.add(
        model_name=tensors.TEXT_PREPROCESS,
        model_version=-1,
        input_map={n: n for n in (tensors.TEXT, tensors.INSTRUCTION, tensors.TRUNCATE)},
        output_map={
            **{n: n for n in features},
            tensors.TOKENS: tensors.TOKENS,
            tensors.TRUNCATED: tensors.TRUNCATED,
        },
    )
    steps.add(
        model_name=tensors.TEXT_ENCODER,
        model_version=-1,
        input_map={t.name: t.name for t in _encoder_inputs(facts)},
        output_map={encoder_output: encoder_output},
    )
    steps.add(
        model_name=tensors.POSTPROCESS,
        model_version=-1,
        input_map={t.name: t.name for t in _postprocess_inputs(facts)},
        output_map={tensors.EMBEDDING: tensors.EMBEDDING},
    )
    return _parameters(
        config,
        {
            "served_model_name": tensors.SERVED_MODEL_NAME,
            "native_dimension": facts.native_dimension,
            "max_tokens": facts.max_tokens,
            "fingerprint": facts.fingerprint,
        },
    )


def to_pbtxt(config: mc.ModelConfig) -> str:
    return text_format.MessageToString(config)
