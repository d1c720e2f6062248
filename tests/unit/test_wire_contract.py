"""Every tensor name and config parameter key on the wire is declared in model_repository/wire.py.

The configs export writes, the Python models and the gateway are searched for the names they
use; a name declared nowhere (a typo, or one added beside the contract) fails here instead of as
a missing tensor or parameter inside Triton.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Iterator
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

from export import configs
from export.facts import ImageFacts, ServedFacts, TextFacts
from model_repository import wire

ROOT = Path(__file__).resolve().parents[2]
WIRE_FILE = ROOT / "model_repository" / "wire.py"
MODEL_FOLDERS = sorted(path.parent for path in ROOT.glob("model_repository/*/1/model.py"))
# The argument that names a tensor, by position, of the calls that take one.
TENSOR_NAME_ARGUMENT = {
    "get_input_tensor_by_name": 1,
    "Tensor": 0,  # pb_utils.Tensor
    "InferInput": 0,
    "InferRequestedOutput": 0,
    "as_numpy": 0,
}
PARAMETER_HOLDERS = ("params", "parameters")
WIRE_MODULES = ("wire", "model_repository.wire")


def _declared() -> set[str]:
    """Every string wire holds: constants, Tensor names and the members of its tuples."""
    found: set[str] = set()
    for name, value in vars(wire).items():
        if name.startswith("_"):
            continue
        for member in value if isinstance(value, tuple) else (value,):
            if isinstance(member, wire.Tensor):
                found.add(member.name)
            elif isinstance(member, str):
                found.add(member)
    return found


def _exported_configs() -> Iterator[mc.ModelConfig]:
    """Every config export builds, text-only and text+image, pooling in the graph or not."""
    image = ImageFacts(dimension=32, image_size=16)
    for pooled_in_graph in (True, False):
        features = (*wire.TOKENIZER_FEATURES, *((wire.POOLING_MASK,) if pooled_in_graph else ()))
        text = TextFacts(
            encoder_inputs=features,
            dimension=32,
            pooling="mean",
            pooled_in_graph=pooled_in_graph,
            max_tokens=64,
        )
        for modalities in (("text",), ("text", "image")):
            served = ServedFacts(
                native_dimension=32, max_tokens=64, fingerprint="f", modalities=modalities
            )
            yield configs.text_preprocess(text)
            yield from (configs.text_encoder(text, backend=b) for b in ("python", "onnxruntime"))
            yield configs.embed_postprocess(text, served)
            yield configs.embed_text(text, served)
            if "image" in modalities:
                yield configs.image_preprocess(image)
                yield from (
                    configs.image_encoder(image, backend=b) for b in ("python", "onnxruntime")
                )
                yield configs.embed_image()


def _config_names(config: mc.ModelConfig) -> Iterator[str]:
    yield config.name
    yield from (t.name for t in (*config.input, *config.output))
    yield from config.parameters
    for step in config.ensemble_scheduling.step:
        yield step.model_name
        for mapping in (step.input_map, step.output_map):
            yield from mapping.keys()
            yield from mapping.values()


class _Source:
    """What one source file's names mean: wire's, imported or through the module, or its own
    string constants; and which of its functions hand an argument on as a tensor name or a
    parameter key."""

    def __init__(self, path: Path) -> None:
        self.tree = ast.parse(path.read_text(), filename=str(path))
        self.wire_aliases: set[str] = set()
        self.constants: dict[str, object] = {}
        for node in self.tree.body:
            self._bind(node)
        self.wrappers: dict[str, tuple[str, int]] = {}
        self.wrappers = dict(self._wrappers())

    def _bind(self, node: ast.stmt) -> None:
        if isinstance(node, ast.Import | ast.ImportFrom) and getattr(node, "module", None) in (
            None,
            "model_repository",
        ):
            self.wire_aliases |= {a.asname or a.name for a in node.names if a.name == "wire"}
        elif isinstance(node, ast.ImportFrom) and node.module in WIRE_MODULES:
            for alias in node.names:
                self.constants[alias.asname or alias.name] = getattr(wire, alias.name, None)
        elif isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
            pairs = (
                zip(target.elts, value.elts, strict=False)
                if isinstance(target, ast.Tuple) and isinstance(value, ast.Tuple)
                else [(target, value)]
            )
            for name, literal in pairs:
                if isinstance(name, ast.Name) and isinstance(literal, ast.Constant):
                    self.constants[name.id] = literal.value

    def _is_wire(self, node: ast.expr) -> bool:
        return isinstance(node, ast.Name) and node.id in self.wire_aliases

    def name(self, node: ast.expr) -> str | None:
        """The name `node` spells: a literal, a constant or wire's; None when it cannot tell."""
        if isinstance(node, ast.Constant):
            value = node.value
        elif isinstance(node, ast.Name):
            value = self.constants.get(node.id)
        elif isinstance(node, ast.Attribute) and self._is_wire(node.value):
            # Undeclared in wire: reported under its own spelling.
            value = getattr(wire, node.attr, f"wire.{node.attr}")
        elif isinstance(node, ast.Attribute) and node.attr == "name":
            return self.name(node.value)
        else:
            return None
        if isinstance(value, wire.Tensor):
            return value.name
        return value if isinstance(value, str) else None

    def _site(self, node: ast.AST) -> tuple[str, ast.expr] | None:
        """("tensor" or "parameter", the expression naming it) when `node` names one."""
        if isinstance(node, ast.Subscript) and _holds_parameters(node.value):
            return "parameter", node.slice
        if not isinstance(node, ast.Call):
            return None
        func = node.func
        called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if called == "get" and isinstance(func, ast.Attribute) and _holds_parameters(func.value):
            kind, position = "parameter", 0
        elif called in self.wrappers:
            kind, position = self.wrappers[called]
        elif called in TENSOR_NAME_ARGUMENT and (called != "Tensor" or _called_on_pb_utils(func)):
            kind, position = "tensor", TENSOR_NAME_ARGUMENT[called]
        else:
            return None
        if position < len(node.args):
            return kind, node.args[position]
        keyword = next((k.value for k in node.keywords if k.arg == "name"), None)
        return None if keyword is None else (kind, keyword)

    def _wrappers(self) -> Iterator[tuple[str, tuple[str, int]]]:
        """Functions that hand one of their parameters (or its `.name`) on as a tensor name or a
        parameter key, with the kind and the position of that parameter."""
        for function in ast.walk(self.tree):
            if not isinstance(function, ast.FunctionDef):
                continue
            arguments = [a.arg for a in function.args.args if a.arg != "self"]
            for site in filter(None, map(self._site, ast.walk(function))):
                kind, named = site
                if isinstance(named, ast.Attribute) and named.attr == "name":
                    named = named.value
                if isinstance(named, ast.Name) and named.id in arguments:
                    yield function.name, (kind, arguments.index(named.id))

    def uses(self) -> Iterator[tuple[str, str | None]]:
        """("tensor", name) and ("parameter", key) where the file names one (None: a name it
        cannot tell, such as a loop variable), ("wire", "wire.X") for an X that wire lacks."""
        for node in ast.walk(self.tree):
            if site := self._site(node):
                yield site[0], self.name(site[1])
            elif isinstance(node, ast.Attribute) and self._is_wire(node.value):
                yield "wire", None if hasattr(wire, node.attr) else f"wire.{node.attr}"
            elif isinstance(node, ast.ImportFrom) and node.module in WIRE_MODULES:
                for alias in node.names:
                    yield "wire", None if hasattr(wire, alias.name) else f"wire.{alias.name}"


def _called_on_pb_utils(func: ast.expr) -> bool:
    return isinstance(func, ast.Attribute) and getattr(func.value, "id", None) == "pb_utils"


def _holds_parameters(node: ast.expr) -> bool:
    """`params`, `parameters`, `x.parameters`, `config["parameters"]` or `_parameters(x)`."""
    if isinstance(node, ast.Name):
        return node.id in PARAMETER_HOLDERS
    if isinstance(node, ast.Attribute):
        return node.attr in PARAMETER_HOLDERS
    if isinstance(node, ast.Subscript):
        return isinstance(node.slice, ast.Constant) and node.slice.value in PARAMETER_HOLDERS
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        return node.func.id.lstrip("_") in PARAMETER_HOLDERS
    return False


def _sources() -> list[Path]:
    models = [p for p in ROOT.glob("model_repository/*/1/*.py") if p.name != "wire.py"]
    return sorted(models) + sorted(ROOT.glob("gateway/*.py"))


def test_every_tensor_name_and_parameter_key_in_use_is_declared_in_wire():
    in_configs = {(name, c.name) for c in _exported_configs() for name in _config_names(c)}
    in_sources = {
        (name, str(path.relative_to(ROOT)))
        for path in _sources()
        for _, name in _Source(path).uses()
        if name is not None
    }
    declared = _declared()
    undeclared = [(name, where) for name, where in in_configs | in_sources if name not in declared]
    assert sorted(undeclared) == []
    # The search of the sources saw what the models are known to read and write.
    seen = {name for name, where in in_sources if where.startswith("model_repository")}
    assert {wire.P_TOKEN_FEATURES, wire.P_LENGTH_INPUT, wire.P_POOL_TOKENS} <= seen
    assert {wire.TEXT.name, wire.TOKENS.name, wire.IMAGE.name, wire.PIXEL_VALUES} <= seen


def test_every_parameter_a_python_model_reads_is_written_by_export():
    written: dict[str, set[str]] = {}
    for config in _exported_configs():
        if config.backend == "python":
            written.setdefault(config.name, set()).update(config.parameters)
    read = {
        folder.parent.name: {
            key
            for path in folder.glob("*.py")
            for kind, key in _Source(path).uses()
            if kind == "parameter" and key is not None
        }
        for folder in MODEL_FOLDERS
    }
    missing = {model: sorted(keys - written[model]) for model, keys in read.items()}
    assert missing == {folder.parent.name: [] for folder in MODEL_FOLDERS}


def test_each_python_model_reads_the_one_wire_module_through_a_link():
    links = {folder.parent.name: os.readlink(folder / "wire.py") for folder in MODEL_FOLDERS}
    assert links == {
        "embed_postprocess": "../../wire.py",
        "image_encoder": "../../wire.py",
        "image_preprocess": "../../wire.py",
        "text_encoder": "../../wire.py",
        "text_preprocess": "../../wire.py",
    }
    assert {(folder / "wire.py").resolve() for folder in MODEL_FOLDERS} == {WIRE_FILE}


def test_the_ensembles_speak_the_tensors_of_the_architecture():
    signature = {
        "text in": [(t.name, t.dtype, t.dims) for t in wire.TEXT_INPUTS],
        "text out": [(t.name, t.dtype, t.dims) for t in wire.TEXT_OUTPUTS],
        "image in": [(t.name, t.dtype, t.dims) for t in wire.IMAGE_INPUTS],
        "image out": [(t.name, t.dtype, t.dims) for t in wire.IMAGE_OUTPUTS],
    }
    assert signature == {
        "text in": [
            ("TEXT", "BYTES", (1,)),
            ("INSTRUCTION", "BYTES", (1,)),
            ("TRUNCATE", "BYTES", (1,)),
            ("DIMENSIONS", "INT32", (1,)),
        ],
        "text out": [
            ("EMBEDDING", "FP32", (-1,)),
            ("TOKENS", "INT32", (1,)),
            ("TRUNCATED", "BOOL", (1,)),
            ("FINGERPRINT", "BYTES", (1,)),
        ],
        "image in": [("IMAGE", "BYTES", (1,)), ("DIMENSIONS", "INT32", (1,))],
        "image out": [("EMBEDDING", "FP32", (-1,)), ("FINGERPRINT", "BYTES", (1,))],
    }
