"""The gateway speaks the tensor names and model facts that the export writes into Triton."""

from __future__ import annotations

from export import configs, tensors
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


def test_gateway_reads_the_facts_the_export_writes():
    facts = configs.ModelFacts(
        native_dimension=384,
        max_tokens=256,
        fingerprint="abc",
        uses_token_type_ids=True,
        pooling="mean",
        pooled_in_graph=True,
        include_prompt=True,
        instruction_template="{instruction} ",
        pad_id=0,
    )
    config = configs.embed_text(facts)
    as_json = {
        "config": {
            "parameters": {
                k: {"string_value": v.string_value} for k, v in config.parameters.items()
            }
        }
    }
    read = gateway_triton.parse_facts(as_json)
    assert (read.served_model_name, read.native_dimension, read.max_tokens, read.fingerprint) == (
        "epithre-embed",
        384,
        256,
        "abc",
    )
