"""Find plugins by name: entry points listed from metadata, imported only when used, checked when loaded.

Any installed distribution can add a plugin by declaring an entry point in one of the groups of ``KINDS``::

    [project.entry-points."gankit.generators"]
    mine = "my_package.models:MyGenerator"

gankit's own built-ins are registered exactly this way. Notebooks and tests can also call ``register_plugin``.
A broken plugin is reported with its name, distribution and cause, and never stops the others from working.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, TypeVar

from pydantic import ValidationError

from gankit.errors import ConfigError, PluginError, format_validation_error
from gankit.interfaces import (
    PLUGIN_API_VERSION,
    Dataset,
    Discriminator,
    Generator,
    Loss,
    PluginOptions,
)

KINDS: dict[str, tuple[str, type]] = {
    "generator": ("gankit.generators", Generator),
    "discriminator": ("gankit.discriminators", Discriminator),
    "loss": ("gankit.losses", Loss),
    "dataset": ("gankit.datasets", Dataset),
}
"""Plugin kind -> (entry-point group, base class every plugin of that kind must subclass)."""

RUNTIME_DISTRIBUTION = "<registered at runtime>"

T = TypeVar("T")


@dataclass
class PluginEntry:
    """One advertised plugin, known from metadata alone until ``load`` is called."""

    kind: str
    name: str
    target: str
    distribution: str
    version: str
    loader: Callable[[], Any] = field(repr=False)

    @property
    def origin(self) -> str:
        """Where the plugin comes from, for messages: ``'gankit' 0.1.0``."""
        return f"'{self.distribution}' {self.version}".strip()


def _entry_points_in(group: str) -> Iterable[metadata.EntryPoint]:
    return metadata.entry_points(group=group)


def _entry_from_metadata(kind: str, ep: metadata.EntryPoint) -> PluginEntry:
    dist = getattr(ep, "dist", None)
    return PluginEntry(
        kind=kind,
        name=ep.name,
        target=ep.value,
        distribution=dist.name if dist is not None else "unknown",
        version=dist.version if dist is not None else "",
        loader=ep.load,
    )


class Registry:
    """The plugins of every kind, from entry points plus any registered at runtime."""

    def __init__(self, entry_points: Callable[[str], Iterable[metadata.EntryPoint]] = _entry_points_in) -> None:
        self._entry_points = entry_points
        self._runtime: dict[tuple[str, str], PluginEntry] = {}
        self._loaded: dict[tuple[str, str], type] = {}

    # -- listing: metadata only, nothing is imported -------------------------------------------------------------

    def entries(self, kind: str | None = None) -> list[PluginEntry]:
        """Every advertised plugin of ``kind`` (all kinds when None), sorted by kind and name."""
        kinds = [_check_kind(kind)] if kind is not None else list(KINDS)
        found: list[PluginEntry] = []
        for each in kinds:
            group = KINDS[each][0]
            seen: set[tuple[str, str, str]] = set()
            for ep in self._entry_points(group):
                entry = _entry_from_metadata(each, ep)
                key = (entry.name, entry.distribution, entry.target)
                if key not in seen:  # a distribution visible twice on sys.path is still one plugin
                    seen.add(key)
                    found.append(entry)
            found.extend(entry for (k, _), entry in self._runtime.items() if k == each)
        return sorted(found, key=lambda e: (list(KINDS).index(e.kind), e.name, e.distribution))

    def names(self, kind: str) -> list[str]:
        """The distinct plugin names of ``kind``, sorted; imports nothing."""
        return sorted({entry.name for entry in self.entries(kind)})

    # -- loading: import, then check ----------------------------------------------------------------------------

    def entry(self, kind: str, name: str) -> PluginEntry:
        """The single entry called ``name``; errors for unknown and ambiguous names."""
        candidates = [entry for entry in self.entries(kind) if entry.name == name]
        if not candidates:
            raise PluginError(self._unknown_message(kind, name))
        if len(candidates) > 1:
            origins = " and ".join(entry.origin for entry in candidates)
            raise PluginError(
                f"{kind} '{name}' is provided by both {origins}; uninstall one of them so the name is unambiguous"
            )
        return candidates[0]

    def load(self, kind: str, name: str) -> type:
        """Import the plugin class, check its base class and API version, and cache it."""
        key = (_check_kind(kind), name)
        if key in self._loaded:
            return self._loaded[key]
        entry = self.entry(kind, name)
        try:
            obj = entry.loader()
        except Exception as exc:  # a plugin's import may fail in any way; report it, keep the host alive
            raise PluginError(
                f"{kind} '{name}' from {entry.origin} ({entry.target}) failed to load: {type(exc).__name__}: {exc}"
            ) from exc
        base = KINDS[kind][1]
        if not (isinstance(obj, type) and issubclass(obj, base)):
            raise PluginError(
                f"{kind} '{name}' from {entry.origin} ({entry.target}) is not a subclass of gankit.{base.__name__}"
            )
        version = getattr(obj, "api_version", PLUGIN_API_VERSION)
        if version != PLUGIN_API_VERSION:
            raise PluginError(
                f"{kind} '{name}' from {entry.origin} was built for gankit plugin API {version}, but this gankit "
                f"speaks API {PLUGIN_API_VERSION}; install a version of {entry.distribution} made for it"
            )
        self._loaded[key] = obj
        return obj

    def status(self, entry: PluginEntry) -> str:
        """``'ok'`` when the plugin loads and checks out, else the one-line reason it does not."""
        try:
            self.load(entry.kind, entry.name)
        except PluginError as exc:
            return str(exc)
        return "ok"

    def options_for(self, kind: str, name: str, values: Mapping[str, Any] | None = None) -> PluginOptions:
        """Validate ``values`` against the plugin's ``Options``. ``None`` values are dropped (flag left unset)."""
        cls = self.load(kind, name)
        given = {key: value for key, value in (values or {}).items() if value is not None}
        try:
            return cls.Options.model_validate(given)  # type: ignore[attr-defined,no-any-return]
        except ValidationError as exc:
            raise ConfigError(format_validation_error(exc, what=f"options for {kind} '{name}'")) from None

    def create(self, kind: str, name: str, options: Mapping[str, Any] | PluginOptions | None = None) -> Any:
        """Build the plugin ``name`` of ``kind`` from raw option values (validated here) or ready options."""
        cls = self.load(kind, name)
        if not isinstance(options, PluginOptions):
            options = self.options_for(kind, name, options)
        return cls(options)

    # -- runtime registration (notebooks, tests) ----------------------------------------------------------------

    def register(self, kind: str, name: str, cls: type, *, replace: bool = False) -> type:
        """Make ``cls`` available as ``name`` without an entry point. Refuses to shadow a name unless ``replace``."""
        key = (_check_kind(kind), name)
        if not replace and any(entry.name == name for entry in self.entries(kind)):
            raise PluginError(f"{kind} '{name}' is already registered; pick another name or pass replace=True")
        self._runtime[key] = PluginEntry(
            kind=kind,
            name=name,
            target=f"{cls.__module__}:{cls.__qualname__}",
            distribution=RUNTIME_DISTRIBUTION,
            version="",
            loader=lambda: cls,
        )
        self._loaded.pop(key, None)
        return cls

    def unregister(self, kind: str, name: str) -> None:
        """Forget a plugin registered at runtime."""
        key = (_check_kind(kind), name)
        self._runtime.pop(key, None)
        self._loaded.pop(key, None)

    def _unknown_message(self, kind: str, name: str) -> str:
        available = self.names(kind)
        hint = difflib.get_close_matches(name, available, n=1)
        did_you_mean = f" Did you mean '{hint[0]}'?" if hint else ""
        listing = ", ".join(available) if available else "none installed"
        return f"unknown {kind} '{name}'.{did_you_mean} Available: {listing}."


def _check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise PluginError(f"unknown plugin kind '{kind}'; expected one of: {', '.join(KINDS)}")
    return kind


registry = Registry()
"""The process-wide registry the CLI and ``gankit.load_generator`` use."""


def list_plugins(kind: str) -> list[str]:
    """Names of the installed plugins of ``kind`` (``generator``, ``discriminator``, ``loss``, ``dataset``)."""
    return registry.names(kind)


def get_plugin(kind: str, name: str) -> type:
    """The plugin class registered as ``name``."""
    return registry.load(kind, name)


def create_plugin(kind: str, name: str, options: Mapping[str, Any] | PluginOptions | None = None) -> Any:
    """Build plugin ``name`` of ``kind`` with validated options, e.g. ``create_plugin("generator", "dcgan")``."""
    return registry.create(kind, name, options)


def register_plugin(kind: str, name: str, *, replace: bool = False) -> Callable[[type[T]], type[T]]:
    """Class decorator registering a plugin at runtime: ``@register_plugin("loss", "hinge")``."""

    def decorate(cls: type[T]) -> type[T]:
        registry.register(kind, name, cls, replace=replace)
        return cls

    return decorate
