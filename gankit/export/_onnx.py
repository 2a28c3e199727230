"""ONNX export of a generator: one ``.onnx`` file, any batch size, that carries the gankit export metadata.

The model takes ``latent`` (float32 ``(N, latent_dim)``) and, when the generator is conditional, ``labels`` (int64
``(N,)``), and returns ``images`` (float32 ``(N, C, H, W)``, clamped to ``[-1, 1]`` exactly as ``gankit sample``
clamps). ``N`` is dynamic. The metadata of the safetensors export (``gankit.export.METADATA_KEYS``, the model card
and any extra keys) goes into the model's ``metadata_props``. Needs the optional packages of
``pip install "gankit[onnx]"``.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import re
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from gankit.errors import ExportError
from gankit.export._format import METADATA_KEYS, ExportMetadata, parse_export_metadata
from gankit.files import atomic_write
from gankit.interfaces import Generator

LATENT, LABELS, IMAGES = "latent", "labels", "images"
"""The names of the ONNX model's inputs and output."""

OPSET = 18
"""The ONNX opset written: onnxruntime 1.14 and later, and most other runtimes, run it."""

INSTALL_HINT = 'ONNX export needs the onnx and onnxscript packages: pip install "gankit[onnx]"'


class _Sampler(nn.Module):
    """What ``gankit sample`` computes from given latents (and labels): the images, float32, clamped to [-1, 1]."""

    def __init__(self, generator: Generator) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, latent: Tensor, labels: Tensor | None = None) -> Tensor:
        images: Tensor = self.generator(latent, labels)
        return images.to(torch.float32).clamp(-1.0, 1.0)


def export_onnx(generator: Generator, path: Path, *, metadata: Mapping[str, str], overwrite: bool = False) -> None:
    """Write ``generator`` as an ONNX model with a dynamic batch size and ``metadata`` in its ``metadata_props``.

    ``metadata`` is an export's metadata (``gankit.export.export_metadata`` makes it, the very metadata
    ``save_generator`` writes; every key of ``METADATA_KEYS`` is required).
    The generator is traced in eval mode on a CPU copy, so the caller's model is left as it was. An existing file is
    refused unless ``overwrite``; a missing package or a plugin the exporter cannot trace is one ``ExportError`` line.
    """
    try:
        import onnx  # noqa: F401  # the exporter's own dependencies, checked here for a one-line hint
        import onnxscript  # noqa: F401
    except ImportError:
        raise ExportError(INSTALL_HINT) from None
    props = _checked_metadata(generator, metadata)
    plugin = props["plugin"]
    model = _Sampler(copy.deepcopy(generator).to("cpu")).eval()
    example = torch.randn(2, generator.latent_dim)  # 2, not 1: a batch of 1 would be specialised as a constant
    batch = torch.export.Dim("batch", min=1)
    inputs: tuple[Tensor, ...] = (example,)
    names, shapes = [LATENT], {LATENT: {0: batch}}
    if generator.num_classes > 0:
        inputs += (torch.arange(2, dtype=torch.int64) % generator.num_classes,)
        names.append(LABELS)
        shapes[LABELS] = {0: batch}
    try:
        with (
            warnings.catch_warnings(),
            _quiet_torch_logs(),
            contextlib.redirect_stdout(io.StringIO()),
            contextlib.redirect_stderr(io.StringIO()),
        ):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                model,
                inputs,
                None,
                input_names=names,
                output_names=[IMAGES],
                dynamic_shapes=shapes,
                opset_version=OPSET,
                dynamo=True,
                external_data=False,
                verbose=False,
            )
    except Exception as exc:  # torch.export and onnxscript raise many types; each means "cannot trace this model"
        raise ExportError(f"generator plugin '{plugin}' cannot be exported to ONNX: {_first_line(exc)}") from None
    if program is None:  # only when the exporter wrote to a path itself, which we never ask of it
        raise ExportError(f"generator plugin '{plugin}' cannot be exported to ONNX: the exporter returned nothing")
    program.model.metadata_props.update(props)
    atomic_write(Path(path), lambda tmp: program.save(str(tmp)), overwrite=overwrite, error=ExportError)


def _load(path: Path) -> Any:
    try:
        import onnx
    except ImportError:
        raise ExportError(INSTALL_HINT) from None
    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError, OSError
        raise ExportError(f"{path} is not an ONNX model ({_first_line(exc)})") from None


def read_onnx_metadata(path: Path) -> dict[str, str]:
    """The ``metadata_props`` of an ONNX file, as a dict of strings."""
    return {prop.key: prop.value for prop in _load(path).metadata_props}


def read_onnx_export_metadata(path: Path) -> ExportMetadata:
    """An ONNX model's gankit metadata, validated as an export's is (``gankit.export.read_export_metadata``), and
    checked against the model's own graph: a file whose metadata says another latent size, image shape or
    conditioning than its inputs and output have is refused, not shown as if it were sound."""
    model = _load(path)
    meta = parse_export_metadata(path, {prop.key: prop.value for prop in model.metadata_props})
    problem = graph_contradiction(model.graph, meta)
    if problem is not None:
        raise ExportError(f"{path} is a damaged gankit export: {problem}")
    return meta


def _shape(value: Any) -> list[int | None]:
    """An ONNX value's shape, a fixed dimension as its size and a dynamic one (the batch) as None."""
    dims = value.type.tensor_type.shape.dim
    return [dim.dim_value if dim.HasField("dim_value") else None for dim in dims]


def _shown(shape: list[int | None]) -> str:
    return "[" + ", ".join("N" if dim is None else str(dim) for dim in shape) + "]"


def graph_contradiction(graph: Any, meta: ExportMetadata) -> str | None:
    """Where the graph's inputs and output say otherwise than the metadata: ``latent`` ``[N, latent_dim]``,
    ``labels`` ``[N]`` exactly when ``num_classes > 0``, ``images`` ``[N, C, H, W]``; None when they agree."""
    initializers = {tensor.name for tensor in graph.initializer}
    inputs = {value.name: _shape(value) for value in graph.input if value.name not in initializers}
    outputs = {value.name: _shape(value) for value in graph.output}
    expected_inputs = {LATENT: [None, meta.latent_dim]}
    if meta.num_classes > 0:
        expected_inputs[LABELS] = [None]
    if set(inputs) != set(expected_inputs):
        return f"its graph takes the inputs {sorted(inputs)}, but its metadata describes {sorted(expected_inputs)}"
    wanted = {**expected_inputs, IMAGES: [None, *meta.image_shape]}
    for name, shape in [*inputs.items(), *outputs.items()]:
        expected = wanted.get(name)
        if expected is None:
            return f"its graph has the output '{name[:40]}', not '{IMAGES}'"
        fits = len(shape) == len(expected) and all(
            want is None or dim is None or dim == want for dim, want in zip(shape, expected, strict=True)
        )
        if not fits:
            return f"its graph's '{name}' has shape {_shown(shape)}, but its metadata says {_shown(expected)}"
    if IMAGES not in outputs:
        return f"its graph has no output '{IMAGES}'"
    return None


def _checked_metadata(generator: Generator, metadata: Mapping[str, Any]) -> dict[str, str]:
    """Every standard key present, strings only, and the geometry it records is the generator's."""
    missing = [key for key in METADATA_KEYS if key not in metadata]
    if missing:
        raise ExportError(
            f"ONNX export metadata lacks the key(s) {', '.join(missing)}; make it with gankit.export.export_metadata"
        )
    props = {str(key): value for key, value in metadata.items()}
    for key, value in props.items():
        if not isinstance(value, str):
            raise ExportError(f"ONNX export metadata must map strings to strings; '{key}' is {type(value).__name__}")
    try:
        recorded = (int(props["latent_dim"]), tuple(json.loads(props["image_shape"])), int(props["num_classes"]))
    except (ValueError, TypeError):
        recorded = None
    built = (generator.latent_dim, tuple(generator.image_shape), generator.num_classes)
    if recorded != built:
        raise ExportError(
            f"ONNX export metadata describes (latent_dim, image_shape, num_classes) = {recorded}, "
            f"but the generator has {built}"
        )
    return props


def _first_line(exc: BaseException) -> str:
    """The first line of an exporter error's root cause (later lines are advice), and the plugin's line that
    raised it when the exporter names it: ``Could not guard on data-dependent expression ... (in forward: if ...)``."""
    root = exc
    while root.__cause__ is not None:
        root = root.__cause__
    lines = [line.strip() for line in str(root).splitlines() if line.strip()]
    reason = (lines[0] if lines else type(root).__name__)[:200]
    where = re.search(r'The following call raised this error:\s+File "[^"]+", line \d+, in (\w+)\s+(.+)', str(exc))
    return f"{reason} (in {where[1]}: {where[2].strip()[:80]})" if where else reason


@contextlib.contextmanager
def _quiet_torch_logs() -> Iterator[None]:
    """Silence what torch.export logs while tracing (failed graphs, guard warnings): the error says what matters."""
    logger = logging.getLogger("torch")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)
