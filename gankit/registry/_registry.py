"""Find plugins by name: entry points listed from metadata, imported only when used, checked when loaded.

Any installed distribution can add a plugin by declaring an entry point in one of the groups of ``KINDS``::

    [project.entry-points."gankit.generators"]
    mine = "my_package.models:MyGenerator"

gankit's own built-ins are registered exactly this way. Notebooks and tests can also call ``register_plugin``.
A broken plugin is reported with its name, distribution and cause, and never stops the others from working.

Wherever a name is taken, ``DIST:NAME`` (``gankit:dcgan``) names the plugin ``NAME`` of the distribution ``DIST``.
When two distributions provide the same name, neither is disabled: the plain name is refused with one line listing
the qualified choices, and each qualified name works. What is known before a plugin is imported (``KINDS``,
``PluginEntry``, ``split_name``) lives in ``gankit.registry`` and is re-exported here.
"""

from __future__ import annotations

import difflib
import inspect
import sys
from collections.abc import Callable, Iterable, Mapping
from importlib import metadata
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import ValidationError

from gankit.errors import ConfigError, PluginError, format_validation_error
from gankit.files import one_line
from gankit.registry._blame import plugin_code
from gankit.registry._entries import (
    KINDS,
    RUNTIME_DISTRIBUTION,
    PluginEntry,
    PluginKind,
    check_kind,
    entry_from_metadata,
    same_distribution,
    split_name,
)

if TYPE_CHECKING:
    from gankit.interfaces import PluginOptions

__all__ = [
    "KINDS",
    "RUNTIME_DISTRIBUTION",
    "PluginEntry",
    "PluginKind",
    "Registry",
    "create_plugin",
    "get_plugin",
    "list_plugins",
    "register_plugin",
    "registry",
    "split_name",
]

T = TypeVar("T")


def _entry_points_in(group: str) -> Iterable[metadata.EntryPoint]:
    return metadata.entry_points(group=group)


def _all_installed() -> dict[str, list[metadata.EntryPoint]]:
    """Every installed entry point of gankit's groups, from one scan of the installed distributions."""
    everything = metadata.entry_points()  # Python 3.10/3.11: grouped, 3.12+: flat; both have select()
    return {kind.group: list(everything.select(group=kind.group)) for kind in KINDS.values()}


class Registry:
    """The plugins of every kind, from entry points plus any registered at runtime."""

    def __init__(self, entry_points: Callable[[str], Iterable[metadata.EntryPoint]] = _entry_points_in) -> None:
        """``entry_points(group)`` lists the entry points of a group: the installed ones by default."""
        self._entry_points = entry_points
        self._listing: dict[str, list[PluginEntry]] | None = None
        """kind -> advertised entries, from one scan; forgotten by ``refresh`` and when ``sys.path`` changes."""
        self._listing_path: frozenset[str] = frozenset()
        self._runtime: dict[tuple[str, str], PluginEntry] = {}
        self._loaded: dict[tuple[str, str, str], type] = {}
        """(kind, name, distribution) -> the checked class."""

    # -- listing: metadata only, nothing is imported -------------------------------------------------------------

    def entries(self, kind: str | None = None) -> list[PluginEntry]:
        """Every advertised plugin of ``kind`` (all kinds when None), sorted by kind and name."""
        kinds = [check_kind(kind)] if kind is not None else list(KINDS)
        listing = self._advertised()
        found: list[PluginEntry] = []
        for each in kinds:
            found.extend(listing[each])
            found.extend(entry for (k, _), entry in self._runtime.items() if k == each)
        return sorted(found, key=lambda e: (list(KINDS).index(e.kind), e.name, e.distribution))

    def refresh(self) -> None:
        """Forget the entry-point listing, so the next lookup scans again (after installing a package in-process)."""
        self._listing = None

    def _advertised(self) -> dict[str, list[PluginEntry]]:
        """The installed entries of every kind, scanned once per ``sys.path`` (a scan reads every distribution's
        metadata: tens of milliseconds, and start-up looks plugins up dozens of times)."""
        path = frozenset(sys.path)
        if self._listing is not None and path == self._listing_path:
            return self._listing
        scanned = _all_installed() if self._entry_points is _entry_points_in else None
        listing: dict[str, list[PluginEntry]] = {}
        for kind, plugin_kind in KINDS.items():
            eps = scanned[plugin_kind.group] if scanned is not None else self._entry_points(plugin_kind.group)
            seen: set[tuple[str, str, str]] = set()
            listing[kind] = []
            for ep in eps:
                entry = entry_from_metadata(kind, ep)
                key = (entry.name, entry.distribution, entry.target)
                if key not in seen:  # a distribution visible twice on sys.path is still one plugin
                    seen.add(key)
                    listing[kind].append(entry)
        self._listing, self._listing_path = listing, path
        return listing

    def names(self, kind: str) -> list[str]:
        """The distinct plugin names of ``kind``, sorted; imports nothing."""
        return sorted({entry.name for entry in self.entries(kind)})

    # -- loading: import, then check ----------------------------------------------------------------------------

    def entry(self, kind: str, name: str) -> PluginEntry:
        """The single entry called ``name``, from metadata alone: ``registry.entry("loss", "hinge").distribution``.

        ``name`` may be qualified, ``DIST:NAME``. A plugin registered at runtime with ``replace=True`` shadows an
        installed one of the same name. Raises ``PluginError`` for an unknown name (with the closest match) and for a
        plain name two distributions provide (listing the qualified names to choose from).
        """
        distribution, plain = split_name(name)
        candidates = [
            entry
            for entry in self.entries(kind)
            if entry.name == plain and (distribution is None or same_distribution(entry.distribution, distribution))
        ]
        if not candidates:
            raise PluginError(self._unknown_message(kind, name))
        runtime = [entry for entry in candidates if entry.distribution == RUNTIME_DISTRIBUTION]
        if runtime:
            return runtime[0]
        if len(candidates) > 1:
            origins = " and ".join(entry.origin for entry in candidates)
            choices = " or ".join(entry.qualified_name for entry in candidates)
            raise PluginError(f"{kind} '{plain}' is provided by both {origins}; name one of them: {choices}")
        return candidates[0]

    def clashes(self, kind: str | None = None) -> dict[tuple[str, str], list[PluginEntry]]:
        """(kind, name) -> the entries of the distributions that all provide it, for names provided more than once."""
        found: dict[tuple[str, str], list[PluginEntry]] = {}
        for entry in self.entries(kind):
            if entry.distribution != RUNTIME_DISTRIBUTION:
                found.setdefault((entry.kind, entry.name), []).append(entry)
        return {key: entries for key, entries in found.items() if len(entries) > 1}

    def load(self, kind: str, name: str) -> type:
        """Import the plugin class ``name`` (plain or ``DIST:NAME``), check it, and cache it (see ``load_entry``)."""
        return self.load_entry(self.entry(check_kind(kind), name))

    def load_entry(self, entry: PluginEntry) -> type:
        """Import the class of ``entry`` and check it: base class, every abstract method implemented, API version,
        and what it declares (``gankit.registry._contract.class_problem``): ``Options`` a pydantic model of the
        kind's options whose defaults pass their own bounds and validators (pydantic checks a default only when
        asked), the signature of each method gankit calls, no API-2 feature under ``api_version = 1``, and a loss's
        ``metric_names`` a tuple rather than a string.

        Anything the import raises, ``SystemExit`` included, becomes a one-line ``PluginError``.
        """
        from gankit.interfaces import MIN_PLUGIN_API_VERSION, PLUGIN_API_VERSION

        kind, name = entry.kind, entry.name
        key = (kind, name, entry.distribution)
        if key in self._loaded:
            return self._loaded[key]
        try:
            obj = entry.loader()
        except (Exception, SystemExit) as exc:  # a plugin's import may fail in any way; report it, keep the host alive
            raise PluginError(
                f"{kind} '{name}' from {entry.origin} ({entry.target}) failed to load: {one_line(exc, kind=True)}"
            ) from exc
        base = KINDS[kind].base
        if not (isinstance(obj, type) and issubclass(obj, base)):
            raise PluginError(
                f"{kind} '{name}' from {entry.origin} ({entry.target}) is not a subclass of "
                f"{base.__module__}.{base.__qualname__}"
            )
        if inspect.isabstract(obj):
            missing = ", ".join(sorted(getattr(obj, "__abstractmethods__", ())))
            raise PluginError(
                f"{kind} '{name}' from {entry.origin} ({entry.target}) does not implement {missing}, which every "
                f"{base.__qualname__} must; define it in the class"
            )
        version = getattr(obj, "api_version", PLUGIN_API_VERSION)
        if not (isinstance(version, int) and MIN_PLUGIN_API_VERSION <= version <= PLUGIN_API_VERSION):
            raise PluginError(
                f"{kind} '{name}' from {entry.origin} was built for gankit plugin API {version}, but this gankit "
                f"speaks APIs {MIN_PLUGIN_API_VERSION} to {PLUGIN_API_VERSION}; install a version of "
                f"{entry.distribution} made for it"
            )
        from gankit.registry._contract import class_problem  # imports torch, as the plugin class did

        try:
            problem = class_problem(obj, base)
        except Exception as exc:  # a default_factory, a descriptor: the class's own code, which may raise anything
            problem = f"could not be checked: {one_line(exc, kind=True)}"
        if problem is not None:
            raise PluginError(f"{kind} '{name}' from {entry.origin} ({entry.target}) {problem}")
        self._loaded[key] = obj
        return obj

    def status(self, entry: PluginEntry) -> str:
        """``'ok'`` when the plugin loads and checks out, else the one-line reason it does not."""
        try:
            self.load_entry(entry)
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
        """Build the plugin ``name`` of ``kind`` from raw option values (validated here) or ready options.

        Anything the plugin's constructor raises becomes a ``PluginFailure`` naming it, and so does a constructor
        that forgot ``super().__init__(options)``.
        """
        from gankit.interfaces import PluginOptions

        cls = self.load(kind, name)
        entry = self.entry(kind, name)
        if not isinstance(options, PluginOptions):
            options = self.options_for(kind, name, options)
        with plugin_code(entry.who, "in its constructor"):
            built = cls(options)
        from torch import nn  # the plugin class imported torch already

        if "options" not in vars(built) or (isinstance(built, nn.Module) and "_modules" not in vars(built)):
            raise PluginError(
                f"{entry.who} did not call super().__init__(options) in its __init__; call it first, it sets up "
                "self.options (and, for a model, torch.nn.Module)"
            )
        return built

    def recorded_name(self, kind: str, name: str, distribution: str) -> str:
        """The name to load a plugin recorded as ``name`` from ``distribution`` by: ``DIST:NAME`` when that
        distribution still provides it (so a clash with another package does not matter), else ``name``."""
        if any(same_distribution(e.distribution, distribution) for e in self.entries(kind) if e.name == name):
            return f"{distribution}:{name}"
        return name

    def who_built(self, kind: str, obj: object) -> str:
        """How messages name the plugin ``obj`` was built from: its entry's ``who`` when the class was loaded through
        this registry, else its kind and class."""
        for (loaded_kind, name, distribution), cls in self._loaded.items():
            if loaded_kind == kind and cls is type(obj):
                found = next((e for e in self.entries(kind) if (e.name, e.distribution) == (name, distribution)), None)
                if found is not None:
                    return found.who
        return f"{kind} {type(obj).__module__}.{type(obj).__qualname__}"

    # -- runtime registration (notebooks, tests) ----------------------------------------------------------------

    def register(self, kind: str, name: str, cls: type, *, replace: bool = False) -> type:
        """Make ``cls`` available as ``name`` without an entry point. Refuses to shadow a name unless ``replace``."""
        key = (check_kind(kind), name)
        if not replace and any(entry.name == name for entry in self.entries(kind)):
            raise PluginError(f"{kind} '{name}' is already registered; pick another name or pass replace=True")
        self._forget_loaded(kind, name)
        self._runtime[key] = PluginEntry(
            kind=kind,
            name=name,
            target=f"{cls.__module__}:{cls.__qualname__}",
            distribution=RUNTIME_DISTRIBUTION,
            version="",
            loader=lambda: cls,
        )
        return cls

    def unregister(self, kind: str, name: str) -> None:
        """Forget a plugin registered at runtime, and the loaded class of any plugin called ``name``."""
        self._runtime.pop((check_kind(kind), name), None)
        self._forget_loaded(kind, name)

    def _forget_loaded(self, kind: str, name: str) -> None:
        for key in [key for key in self._loaded if key[:2] == (kind, name)]:
            del self._loaded[key]

    def _unknown_message(self, kind: str, name: str) -> str:
        distribution, plain = split_name(name)
        if distribution is not None and plain in self.names(kind):
            offered = ", ".join(entry.qualified_name for entry in self.entries(kind) if entry.name == plain)
            return f"no distribution '{distribution}' provides {kind} '{plain}'; installed: {offered}."
        available = self.names(kind)
        hint = difflib.get_close_matches(plain, available, n=1)
        did_you_mean = f" Did you mean '{hint[0]}'?" if hint else ""
        listing = ", ".join(available) if available else "none installed"
        return f"unknown {kind} '{name}'.{did_you_mean} Available: {listing}."


registry = Registry()
"""The process-wide registry the CLI and ``gankit.load_generator`` use."""


def list_plugins(kind: str) -> list[str]:
    """The names of the installed plugins of ``kind``, sorted; read from metadata, nothing is imported.

    ``kind`` is one of ``KINDS``: ``generator``, ``discriminator``, ``loss``, ``dataset`` or ``tracker``.
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
