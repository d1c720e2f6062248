"""The gateway speaks the tensor names and model facts that the export writes into Triton."""

from __future__ import annotations

from export import configs, tensors
from export.facts import ServedFacts, TextFacts
from gateway import triton as gateway_triton


def test_gateway_tensor_names_are_the_ensemble_names():
    sent = (
        gateway_triton.TEXT,
        gateway_triton.INSTRUCTION,
        gateway_triton.TRUNCATE,
        gateway_triton.DIMENSIONS,
    )
    received = (gateway_triton.EMBEDDING, gateway_triton.TOKENS, gateway_triton.TRUNCATED)
    assert sent == (tensors.TEXT, tensors.INSTRUCTION, tensors.TRUNCATE, tensors.DIMENSIONS)
    assert received == (tensors.EMBEDDING, tensors.TOKENS, tensors.TRUNCATED)
    assert gateway_triton.IMAGE == tensors.IMAGE


def test_gateway_reads_the_facts_the_export_writes():
    text = TextFacts(
        encoder_inputs=(tensors.INPUT_IDS,),
        dimension=384,
        pooling="mean",
        pooled_in_graph=True,
        max_tokens=256,
    )
    served = ServedFacts(
        native_dimension=384, max_tokens=256, fingerprint="abc", modalities=("text", "image")
    )
    config = configs.embed_text(text, served)
    parameters = {k: {"string_value": v.string_value} for k, v in config.parameters.items()}
    read = gateway_triton.parse_facts({"config": {"parameters": parameters}})
    assert (read.served_model_name, read.native_dimension, read.max_tokens, read.fingerprint) == (
        "epithre-embed",
        384,
        256,
        "abc",
    )
    assert read.supports_images
