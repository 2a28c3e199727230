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
