"""Sentence-transformers checkpoints: the text tower, its tokenizer and its facts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from export.checkpoint import Checkpoint
from export.facts import TextFacts
from export.graph import EAGER_ATTENTION
from export.parity import ParityReport, check_sentence_transformer
from export.probes import PROBES
from export.text_tower import export_text_tower, graph_inputs


@dataclass(frozen=True)
class SentenceTransformerTower:
    model: object
    tokenizer: object
    text: TextFacts

    @classmethod
    def load(cls, checkpoint_dir: Path, *, pool_in_graph: bool) -> SentenceTransformerTower:
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(
            str(checkpoint_dir),
            device="cpu",
            local_files_only=True,
            model_kwargs={"attn_implementation": EAGER_ATTENTION},
        )
        checkpoint = Checkpoint.of(checkpoint_dir, model)
        tokenizer = model.tokenizer
        names = list(tokenizer.model_input_names)
        text = TextFacts(
            encoder_inputs=graph_inputs(
                names,
                pooling=checkpoint.pooling,
                pooled_in_graph=pool_in_graph,
                include_prompt=checkpoint.include_prompt,
            ),
            dimension=checkpoint.dimension,
            pooling=checkpoint.pooling,
            pooled_in_graph=pool_in_graph,
            max_tokens=checkpoint.max_tokens,
            include_prompt=checkpoint.include_prompt,
            instruction_template=checkpoint.instruction_template,
            pad_id=int(tokenizer.pad_token_id or 0),
        )
        return cls(model, tokenizer, text)

    def export_text(self, destination: Path) -> Path:
        return export_text_tower(self.model[0].auto_model, self.text, destination)

    def text_parity(self, onnx_path: Path) -> ParityReport:
        return check_sentence_transformer(
            self.model, onnx_path, PROBES, pooled=self.text.pooled_in_graph
        )
