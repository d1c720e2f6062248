"""Faster variants of the exported fp32 text tower, published only when they stay close to it.

`int8` (dynamic quantization, for CPUs) replaces the served model.onnx; `fp16` (for GPUs) is
written beside it and served by the production config only, the local Python tower keeping fp32.
Either is compared with the fp32 graph on the probes and longer texts made from them, and
refused below the operator's minimum cosine: the fp32 graph then stays served.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from export.facts import TextFacts
from export.parity import cosine_rows, run_onnx
from export.probes import PROBES
from model_repository import wire

VARIANTS = ("fp32", "int8", "fp16")
SERVED_FILE = "model.onnx"  # what the configs serve unless a variant says otherwise
DEFAULT_MIN_COSINE = 0.99
INT8_FILE = "model.int8.onnx"  # compared here before it replaces model.onnx
FP16_FILE = "model_fp16.onnx"
COMPARISON_TEXTS = 64
CPU = "CPUExecutionProvider"
GPU = "CUDAExecutionProvider"


@dataclass(frozen=True)
class VariantReport:
    name: str
    min_cosine: float
    mean_cosine: float
    threshold: float
    published: bool
    verified: bool
    reason: str
    texts: int  # compared with the fp32 graph
    provider: str | None  # the execution provider the variant was compared on
    production_file: str  # the graph configs/production.pbtxt serves

    def as_dict(self) -> dict:
        return asdict(self)


def comparison_texts(count: int = COMPARISON_TEXTS) -> list[str]:
    """The probes, then seeded runs of 2-4 probes: a dozen short texts hide quantization error."""
    rng = random.Random(0)
    runs = [" ".join(rng.sample(PROBES, rng.randint(2, 4))) for _ in range(count - len(PROBES))]
    return [*PROBES, *runs]


def text_features(tokenizer, text: TextFacts, texts: list[str]) -> dict[str, np.ndarray]:
    """The text graph's inputs for `texts`, tokenized as the text_preprocess model does."""
    padding = "max_length" if text.pad_to_max_tokens else True
    encoded = tokenizer(
        texts, padding=padding, truncation=True, max_length=text.max_tokens, return_tensors="np"
    )
    features = {
        name: np.asarray(encoded[name], dtype=np.int64)
        for name in text.encoder_inputs
        if name != wire.POOLING_MASK
    }
    if wire.POOLING_MASK in text.encoder_inputs:
        features[wire.POOLING_MASK] = features[wire.ATTENTION_MASK]
    return features


def down_projections(model: onnx.ModelProto) -> list[str]:
    """MatMuls whose weight narrows its input: the feed-forward outputs of every layer.

    Their input is the GELU's output, a long positive tail that one uint8 scale per batch
    resolves poorly; left in fp32 they lift all-MiniLM-L6-v2's min cosine from 0.982 to 0.991,
    for 1.3x fp32's CPU throughput instead of 1.6x.
    """
    weights = {w.name: tuple(w.dims) for w in model.graph.initializer}
    return [
        node.name
        for node in model.graph.node
        if node.op_type == "MatMul"
        and len(shape := weights.get(node.input[1], ())) == 2
        and shape[0] > shape[1]
    ]


def quantize_int8(fp32_onnx: Path, destination: Path) -> Path:
    """Dynamic int8: per-channel signed weights, the down-projections left in fp32.

    On all-MiniLM-L6-v2 per-tensor weights give a min cosine of 0.89 and reduce_range costs
    0.002; unsigned weights gain 0.002 but run MLAS's u8u8 kernels, no faster than fp32.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        fp32_onnx,
        destination,
        per_channel=True,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=down_projections(onnx.load(str(fp32_onnx), load_external_data=False)),
    )
    return destination


def convert_fp16(fp32_onnx: Path, destination: Path) -> Path:
    """fp16 weights and arithmetic; int64 inputs and the fp32 output keep the configs valid."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    onnx.save(convert_float_to_float16(onnx.load(str(fp32_onnx)), keep_io_types=True), destination)
    return destination


def _run(onnx_path: Path, features: dict[str, np.ndarray], provider: str) -> tuple[np.ndarray, str]:
    """The graph's output and the provider that actually ran it (ORT may fall back to CPU)."""
    session = ort.InferenceSession(str(onnx_path), providers=[provider])
    (output,) = session.run(None, features)
    return output, session.get_providers()[0]


def text_cosines(
    reference: np.ndarray, candidate: np.ndarray, features: dict[str, np.ndarray]
) -> np.ndarray:
    """One cosine per text; for token outputs the worst of the text's real tokens."""
    cosines = cosine_rows(reference, candidate)
    if cosines.ndim == 1:
        return cosines
    real = features[wire.ATTENTION_MASK].astype(bool)
    return np.where(real, cosines, np.inf).min(axis=1)


def reference_report(threshold: float) -> VariantReport:
    return VariantReport(
        name="fp32",
        min_cosine=1.0,
        mean_cosine=1.0,
        threshold=threshold,
        published=True,
        verified=True,
        reason="the fp32 reference itself (text_parity_fp32 compares it with PyTorch)",
        texts=0,
        provider=None,
        production_file=SERVED_FILE,
    )


def _build(name: str, fp32_onnx: Path) -> tuple[Path, str]:
    """The variant's graph beside `fp32_onnx`, and the provider to compare it on."""
    if name == "int8":
        return quantize_int8(fp32_onnx, fp32_onnx.with_name(INT8_FILE)), CPU
    if name == "fp16":
        provider = GPU if GPU in ort.get_available_providers() else CPU
        return convert_fp16(fp32_onnx, fp32_onnx.with_name(FP16_FILE)), provider
    raise ValueError(f"unknown variant {name!r}; expected one of {VARIANTS}")


def publish_variant(
    name: str, fp32_onnx: Path, features: dict[str, np.ndarray], *, threshold: float
) -> VariantReport:
    """Build variant `name` of `fp32_onnx`, compare it on `features`, then publish or refuse.

    Published int8 replaces `fp32_onnx`; published fp16 stays beside it as FP16_FILE. A refused
    variant's file is removed, so the fp32 graph is what every config serves.
    """
    if name == "fp32":
        return reference_report(threshold)
    candidate, provider = _build(name, fp32_onnx)
    output, ran_on = _run(candidate, features, provider)
    cosines = text_cosines(run_onnx(fp32_onnx, features), output, features)
    published = bool(cosines.min() >= threshold)
    # int8 targets the CPU it was just measured on; fp16 targets GPUs, whose kernels differ.
    verified = name == "int8" or ran_on == GPU
    reason = [f"min cosine {cosines.min():.6f} to fp32 on {ran_on}"]
    if not published:
        reason.append(f"refused below {threshold}: fp32 stays served")
        candidate.unlink()
    elif name == "int8":
        reason.append("served by every config; on a GPU its quantized ops fall back to the CPU")
        candidate.replace(fp32_onnx)
    else:
        reason.append("served by configs/production.pbtxt; the local tower keeps fp32")
    if not verified:
        reason.append("unverified: needs a run on a GPU")
    return VariantReport(
        name=name,
        min_cosine=float(cosines.min()),
        mean_cosine=float(cosines.mean()),
        threshold=threshold,
        published=published,
        verified=verified,
        reason="; ".join(reason),
        texts=len(cosines),
        provider=ran_on,
        production_file=FP16_FILE if published and name == "fp16" else SERVED_FILE,
    )
