"""The option table of a plugin: every field of its pydantic ``Options``, with type, default, bounds and checks."""

from __future__ import annotations

import enum
import inspect
import types
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Union, get_args, get_origin

from pydantic.fields import FieldInfo

if TYPE_CHECKING:
    from gankit.interfaces import PluginOptions
import dataclasses
import sys
from contextlib import contextmanager
from dataclasses import field

import torch
from pydantic import ValidationError
from torch import Tensor, nn
from torch.nn.utils import parametrize

from gankit.errors import ConfigError, PluginError, format_validation_error
from gankit.files import one_line
from gankit.interfaces import Discriminator, Generator, PluginOptions
from gankit.registry._registry import registry
from gankit.registry._sizing import build_on_meta, check_weights_fit

# -- from option_table.py ----------------------------------------------------------------------------------------

_BOUNDS = {
    "ge": ">=",
    "gt": ">",
    "le": "<=",
    "lt": "<",
    "multiple_of": "multiple of",
    "min_length": "min length",
    "max_length": "max length",
}
"""annotated-types constraint -> how it reads in a table, in this order."""


@dataclass(frozen=True)
class OptionInfo:
    """One field of a plugin's ``Options``: what the ``--gen-opt KEY=VALUE`` family accepts."""

    name: str
    type: str
    required: bool
    default: Any
    """The default value; None when ``required`` (and when the default is None)."""
    value: Any
    """The value this description was made with: the default unless given to ``describe_plugin``."""
    bounds: dict[str, Any]
    """Numeric and length constraints from the field's metadata, e.g. ``{"ge": 1, "le": 1024}``."""
    choices: tuple[Any, ...] | None
    """The allowed values, when the field is a ``Literal``, an ``Enum`` or declares a JSON-schema ``enum``."""
    description: str
    checks: tuple[str, ...] = ()
    """Constraints enforced by validator functions rather than field bounds: each validator's docstring (its first
    line), or its name when it has none."""

    @property
    def default_text(self) -> str:
        return "required" if self.required else _show(self.default)

    @property
    def bounds_text(self) -> str:
        """``>= 1, <= 1024``, ``one of 28, 32, 64``, or empty when unconstrained."""
        parts = [f"{_BOUNDS[key]} {_show(self.bounds[key])}" for key in _BOUNDS if key in self.bounds]
        if self.choices is not None:
            parts.insert(0, "one of " + ", ".join(_show(choice) for choice in self.choices))
        elif self.checks:
            parts.extend(self.checks)
        return ", ".join(parts)


def describe_options(model: type[PluginOptions], values: PluginOptions | None = None) -> tuple[OptionInfo, ...]:
    """The option table of an ``Options`` class, with the values of ``values`` (default: the defaults)."""
    rows = []
    for name, info in model.model_fields.items():
        required = info.is_required()
        default = None if required else info.get_default(call_default_factory=True)
        rows.append(
            OptionInfo(
                name=name,
                type=type_name(info.annotation),
                required=required,
                default=default,
                value=getattr(values, name, default) if values is not None else default,
                bounds=_bounds(info),
                choices=_choices(info),
                description=info.description or "",
                checks=tuple(_checks(model, name, info)),
            )
        )
    return tuple(rows)


def type_name(annotation: Any) -> str:
    """A readable name for an annotation: ``int``, ``Path | None``, ``28 | 32 | 64``, ``tuple[float, float]``."""
    if annotation is None or annotation is type(None):
        return "None"
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Literal:
        return " | ".join(repr(arg) for arg in args)
    if origin is Union or origin is types.UnionType:
        return " | ".join(type_name(arg) for arg in args)
    if origin is not None:
        base = getattr(origin, "__name__", str(origin))
        return f"{base}[{', '.join('...' if arg is Ellipsis else type_name(arg) for arg in args)}]" if args else base
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def _bounds(info: FieldInfo) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for constraint in info.metadata:
        for key in _BOUNDS:
            value = getattr(constraint, key, None)
            if value is not None:
                found[key] = value
    return found


def _checks(model: type[PluginOptions], name: str, info: FieldInfo) -> Iterator[str]:
    """What the field's validator functions say they check: ``Annotated[..., AfterValidator(f)]`` and
    ``@field_validator`` methods alike."""
    functions = [getattr(item, "func", None) for item in info.metadata]
    decorators = model.__pydantic_decorators__.field_validators.values()
    functions += [found.func for found in decorators if name in found.info.fields or "*" in found.info.fields]
    for function in functions:
        if callable(function):
            summary, _ = split_doc(getattr(function, "__doc__", None))
            yield summary.rstrip(".") or f"checked by {getattr(function, '__name__', 'a validator')}"


def _choices(info: FieldInfo) -> tuple[Any, ...] | None:
    annotation = info.annotation
    if get_origin(annotation) is Literal:
        return get_args(annotation)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return tuple(member.value for member in annotation)
    extra = info.json_schema_extra
    listed = extra.get("enum") if isinstance(extra, Mapping) else None
    return tuple(listed) if isinstance(listed, list) else None


def _show(value: Any) -> str:
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, Path):
        return str(value)
    return repr(value)


def split_doc(doc: str | None) -> tuple[str, str]:
    """(first paragraph as one line, the rest) of a docstring."""
    if not doc:
        return "", ""
    head, _, rest = inspect.cleandoc(doc).partition("\n\n")
    return " ".join(head.split()), rest.strip()


# -- from layer_table.py -----------------------------------------------------------------------------------------

DUMMY_BATCH = 2
"""Images in the dummy batch a model is run on; shapes are reported with this as their first dimension."""


@dataclass(frozen=True)
class LayerInfo:
    """One layer of a model: a leaf module, or any module holding parameters of its own."""

    path: str
    """Dotted path from the model, as in ``state_dict`` keys (``net.0``); empty for the model itself."""
    type: str
    output_shape: tuple[int, ...] | None
    """Shape of the first output of the first call, batch dimension included; None when not a tensor or not run."""
    parameters: int
    """Parameters this module owns (with those of its parametrizations, e.g. spectral norm), not its children's."""
    calls: int
    """How many times the module ran in the one forward pass; 0 for a layer the pass did not use."""


def _layer_modules(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """Leaf modules and modules with parameters of their own, skipping the insides of parametrizations.

    A spectrally normalised convolution is one layer here, counted with its ``weight_orig``-like parameters, rather
    than a convolution plus the modules that compute its weight.
    """
    inside: list[str] = []
    for path, module in model.named_modules():
        if any(path == prefix or path.startswith(prefix + ".") for prefix in inside):
            continue
        if parametrize.is_parametrized(module):
            inside.append(f"{path}.parametrizations" if path else "parametrizations")
        children = [name for name, _ in module.named_children() if name != "parametrizations"]
        if not children or _own_parameters(module) > 0:
            yield path, module


def _own_parameters(module: nn.Module) -> int:
    count = sum(p.numel() for p in module.parameters(recurse=False))
    if parametrize.is_parametrized(module):
        parametrizations: nn.Module = module.parametrizations  # type: ignore[assignment]
        count += sum(p.numel() for p in parametrizations.parameters())
    return count


def _layer_type(module: nn.Module) -> str:
    """``Conv2d``, or ``Conv2d (weight: SpectralNorm)`` for a parametrized one rather than ``ParametrizedConv2d``."""
    if not parametrize.is_parametrized(module):
        return type(module).__name__
    base = type(module).__mro__[1].__name__
    parametrizations: Mapping[str, nn.ModuleList] = module.parametrizations  # type: ignore[assignment]
    applied = ", ".join(
        f"{tensor}: {' + '.join(type(p).__name__.lstrip('_') for p in chain)}"
        for tensor, chain in parametrizations.items()
    )
    return f"{base} ({applied})"


def _first_shape(output: Any) -> tuple[int, ...] | None:
    if isinstance(output, Tensor):
        return tuple(output.shape)
    if isinstance(output, tuple | list) and output and isinstance(output[0], Tensor):
        return tuple(output[0].shape)
    return None


@contextmanager
def _recording(layers: list[tuple[str, nn.Module]], shapes: dict[str, list[tuple[int, ...] | None]]) -> Iterator[None]:
    def hook_for(path: str) -> Any:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            shapes.setdefault(path, []).append(_first_shape(output))

        return hook

    handles = [module.register_forward_hook(hook_for(path)) for path, module in layers]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _dummy_inputs(model: nn.Module) -> dict[str, Tensor]:
    """A latent batch for a generator, a batch of zero images for a discriminator, and labels if conditional."""
    seed = torch.Generator().manual_seed(0)
    inputs: dict[str, Tensor] = {}
    if isinstance(model, Generator):
        inputs["latent"] = model.sample_latent(DUMMY_BATCH, generator=seed)
    elif isinstance(model, Discriminator):
        inputs["images"] = torch.zeros(DUMMY_BATCH, *model.image_shape)
    num_classes = int(getattr(model, "num_classes", 0))
    if num_classes:
        inputs["labels"] = torch.arange(DUMMY_BATCH) % num_classes
    return inputs


def layer_fields(model: nn.Module, *, who: str) -> dict[str, Any]:
    """Run ``model`` once on a dummy batch in eval mode, with hooks on its layers: the ``PluginDescription`` fields of
    the layer table (``layers``, shapes, parameter counts, warnings). ``who`` names the plugin in a failure."""
    layers = list(_layer_modules(model))
    shapes: dict[str, list[tuple[int, ...] | None]] = {}
    inputs = _dummy_inputs(model)
    model.eval()
    try:
        with torch.no_grad(), _recording(layers, shapes):
            output = model(*inputs.values())
    except Exception as exc:  # a plugin's forward may fail in any way; say where, in one line
        ran = [path for path, _ in layers if path in shapes]
        after = f" after layer '{ran[-1]}'" if ran else ""
        shown = ", ".join(f"{key} {tuple(value.shape)}" for key, value in inputs.items())
        raise PluginError(
            f"{who} failed on a dummy batch ({shown}){after}: {one_line(exc, limit=300, kind=True)}"
        ) from exc
    rows = tuple(
        LayerInfo(
            path=path,
            type=_layer_type(module),
            output_shape=shapes[path][0] if path in shapes else None,
            parameters=_own_parameters(module),
            calls=len(shapes.get(path, [])),
        )
        for path, module in layers
    )
    parameters = list(model.parameters())
    output_shape = _first_shape(output)
    return dict(
        layers=rows,
        input_shapes={key: tuple(value.shape) for key, value in inputs.items()},
        output_shape=output_shape,
        total_parameters=sum(p.numel() for p in parameters),
        trainable_parameters=sum(p.numel() for p in parameters if p.requires_grad),
        parameter_bytes=sum(p.numel() * p.element_size() for p in parameters),
        warnings=tuple(_contract_warnings(model, output)),
    )


def _contract_warnings(model: nn.Module, output: Any) -> list[str]:
    """What ``gankit.registry`` would refuse in the dummy pass's output, as warnings (``info`` still describes it)."""
    from gankit.registry._contract import discriminator_problems, generator_problems

    if isinstance(model, Generator):
        return generator_problems(output, model, DUMMY_BATCH)
    if isinstance(model, Discriminator):
        return discriminator_problems(output, DUMMY_BATCH)
    return []


# -- from introspect.py ------------------------------------------------------------------------------------------

__all__ = [
    "DUMMY_BATCH",
    "LayerInfo",
    "OptionInfo",
    "PluginDescription",
    "describe_options",
    "describe_plugin",
    "type_name",
]

MODEL_KINDS = ("generator", "discriminator")


@dataclass(frozen=True)
class PluginDescription:
    """Everything ``gankit info`` shows about one plugin."""

    kind: str
    name: str
    target: str
    distribution: str
    version: str
    api_version: int
    summary: str
    """First paragraph of the class docstring, as one line."""
    details: str
    """The rest of the class docstring."""
    module_summary: str
    """First paragraph of the docstring of the module defining the class, as one line."""
    options: tuple[OptionInfo, ...]
    recommended_training: dict[str, Any] = field(default_factory=dict)
    """The training settings the plugin recommends (``recommended_training``; read from generators and losses)."""
    layers: tuple[LayerInfo, ...] | None = None
    """The layer table: generators and discriminators only."""
    input_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    """What the dummy forward pass was given: ``latent`` or ``images``, and ``labels`` when conditional."""
    output_shape: tuple[int, ...] | None = None
    total_parameters: int | None = None
    trainable_parameters: int | None = None
    parameter_bytes: int | None = None
    warnings: tuple[str, ...] = ()
    """Departures from the plugin contract seen in the dummy pass, e.g. an output shape that is not the declared one."""

    @property
    def origin(self) -> str:
        return f"'{self.distribution}' {self.version}".strip()


def describe_plugin(kind: str, name: str, /, *, image_size: int | None = None, **options: Any) -> PluginDescription:
    """Describe plugin ``name`` of ``kind``; models are built with ``options`` (and ``image_size``) and run once.

    ``describe_plugin("generator", "dcgan", image_size=64, width=32)``. Raises ``PluginError`` for unknown or broken
    plugins and ``ConfigError`` for invalid options, like the rest of gankit, so the CLI can print them as one line.
    """
    cls = registry.load(kind, name)
    entry = registry.entry(kind, name)
    if image_size is not None:
        if kind not in MODEL_KINDS:
            raise ConfigError(f"image_size applies to generators and discriminators, not to a {kind}")
        options["image_size"] = image_size
    given = {key: value for key, value in options.items() if value is not None}
    try:
        resolved: PluginOptions = cls.Options.model_validate(given)  # type: ignore[attr-defined]
    except ValidationError as exc:
        missing = [".".join(map(str, error["loc"])) for error in exc.errors() if error["type"] == "missing"]
        if len(missing) != len(exc.errors()):
            raise ConfigError(format_validation_error(exc, what=f"options for {kind} '{name}'")) from None
        resolved = cls.Options.model_construct(**given)  # type: ignore[attr-defined]  # "required", no value
    else:
        missing = []
    summary, details = split_doc(cls.__dict__.get("__doc__"))
    module_summary, _ = split_doc(getattr(sys.modules.get(cls.__module__), "__doc__", None))
    description = PluginDescription(
        kind=kind,
        name=name,
        target=entry.target,
        distribution=entry.distribution,
        version=entry.version,
        api_version=int(getattr(cls, "api_version", 0)),
        summary=summary,
        details=details,
        module_summary=module_summary,
        options=describe_options(type(resolved), resolved),
        recommended_training=dict(getattr(cls, "recommended_training", {})),
    )
    if kind not in MODEL_KINDS:
        return description
    if missing:
        flag = "--gen-opt" if kind == "generator" else "--disc-opt"
        needed = ", ".join(f"{flag} {key}=..." for key in missing)
        return dataclasses.replace(description, warnings=(f"layers not shown: the model needs {needed}",))
    planned = build_on_meta(kind, name, resolved)  # a model too large for this machine is refused unbuilt
    if planned is not None:
        check_weights_fit(planned, kind=kind, name=name)
    model = registry.create(kind, name, resolved)
    return dataclasses.replace(description, **layer_fields(model, who=entry.who))
