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
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from pydantic import ValidationError

from gankit.errors import ConfigError, PluginError, format_validation_error

if TYPE_CHECKING:
    from gankit.interfaces import PluginOptions


class PluginKind(NamedTuple):
    """One kind of plugin: where its entry points are listed and what its classes must subclass."""

    group: str
    """The entry-point group, e.g. ``gankit.generators``."""
    base_name: str
    """The base class in ``gankit.interfaces`` every plugin of the kind subclasses, e.g. ``Generator``."""

    @property
    def base(self) -> type:
        """The base class itself; importing it imports torch, so the CLI can list kinds without it."""
        from gankit import interfaces

        cls: type = getattr(interfaces, self.base_name)
        return cls


KINDS: dict[str, PluginKind] = {
    "generator": PluginKind("gankit.generators", "Generator"),
    "discriminator": PluginKind("gankit.discriminators", "Discriminator"),
    "loss": PluginKind("gankit.losses", "Loss"),
    "dataset": PluginKind("gankit.datasets", "Dataset"),
}
"""Every plugin kind, by the name users type (``gankit plugins --kind loss``): the one list of kinds gankit has."""

RUNTIME_DISTRIBUTION = "<registered at runtime>"

T = TypeVar("T")


@dataclass
class PluginEntry:
    """One advertised plugin, known from metadata alone until ``load`` is called."""

    kind: str
    """One of ``KINDS``: ``generator``, ``discriminator``, ``loss`` or ``dataset``."""
    name: str
    """The name users type, e.g. after ``--gen``."""
    target: str
    """Where the class lives, ``module:Class``, as the entry point says."""
    distribution: str
    """The installed distribution (pip package) that advertises the plugin; ``<registered at runtime>`` for
    ``register_plugin``."""
    version: str
    """That distribution's version; empty at runtime."""
    loader: Callable[[], Any] = field(repr=False)
    """Imports and returns the class, unchecked; ``Registry.load`` is the checked way."""

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
            group = KINDS[each].group
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
        """The single entry called ``name``, from metadata alone: ``registry.entry("loss", "hinge").distribution``.

        Raises ``PluginError`` for an unknown name (with the closest match) and for a name two distributions provide.
        """
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
        from gankit.interfaces import PLUGIN_API_VERSION

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
        base = KINDS[kind].base
        if not (isinstance(obj, type) and issubclass(obj, base)):
            raise PluginError(
                f"{kind} '{name}' from {entry.origin} ({entry.target}) is not a subclass of "
                f"{base.__module__}.{base.__qualname__}"
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
        from gankit.interfaces import PluginOptions

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
    """The names of the installed plugins of ``kind``, sorted; read from metadata, nothing is imported.

    ``kind`` is one of ``KINDS``: ``generator``, ``discriminator``, ``loss`` or ``dataset``.
    """
    return registry.names(kind)


def get_plugin(kind: str, name: str) -> type:
    """The plugin class registered as ``name``, imported and checked (base class, API version) on first use.

    Raises ``PluginError``, one line naming the plugin and its distribution, when it is unknown, ambiguous, fails to
    import or is not a subclass of its kind's base class.
    """
    return registry.load(kind, name)


def create_plugin(kind: str, name: str, options: Mapping[str, Any] | PluginOptions | None = None) -> Any:
    """Build plugin ``name`` of ``kind`` with validated options, e.g. ``create_plugin("generator", "dcgan")``.

    ``options`` is a mapping validated against the plugin's ``Options`` (``None`` values are dropped, so an unset
    flag keeps the plugin's default; a bad value raises ``ConfigError``), or an ``Options`` instance used as is.
    """
    return registry.create(kind, name, options)


def register_plugin(kind: str, name: str, *, replace: bool = False) -> Callable[[type[T]], type[T]]:
    """Class decorator registering a plugin at runtime, without a package: ``@register_plugin("loss", "hinge")``.

    The class is then available under ``name`` in this process, everywhere a name is taken. A name that already
    exists is refused unless ``replace=True``. Its distribution is ``<registered at runtime>``, and so is that of
    an export of it: loading the export in another process needs the same call first.
    ``registry.unregister(kind, name)`` forgets it.
    """

    def decorate(cls: type[T]) -> type[T]:
        registry.register(kind, name, cls, replace=replace)
        return cls

    return decorate
