"""What gankit knows of a plugin before importing it: the kinds, an advertised entry, and ``DIST:NAME`` names.

Nothing here imports a plugin or torch, so the CLI can list kinds and names cheaply; loading and checking is
``gankit.registry``'s.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, NamedTuple

from gankit.errors import PluginError


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
    "tracker": PluginKind("gankit.trackers", "Tracker"),
}
"""Every plugin kind, by the name users type (``gankit plugins --kind loss``): the one list of kinds gankit has."""

RUNTIME_DISTRIBUTION = "<registered at runtime>"


@dataclass
class PluginEntry:
    """One advertised plugin, known from metadata alone until ``load`` is called."""

    kind: str
    """One of ``KINDS``: ``generator``, ``discriminator``, ``loss``, ``dataset`` or ``tracker``."""
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

    @property
    def who(self) -> str:
        """The plugin as messages name it: ``generator 'dcgan' from 'gankit' 0.1.0``."""
        return f"{self.kind} '{self.name}' from {self.origin}"

    @property
    def qualified_name(self) -> str:
        """``DIST:NAME``, the name that picks this plugin even when another distribution uses ``NAME`` too."""
        return f"{self.distribution}:{self.name}"


def split_name(name: str) -> tuple[str | None, str]:
    """``("gankit", "dcgan")`` for ``gankit:dcgan``; ``(None, "dcgan")`` for a plain name."""
    distribution, colon, plain = name.rpartition(":")
    return (distribution, plain) if colon else (None, name)


def same_distribution(a: str, b: str) -> bool:
    """Distribution names compare as pip does: case-insensitive, with ``-``, ``_`` and ``.`` alike."""
    return re.sub(r"[-_.]+", "-", a).lower() == re.sub(r"[-_.]+", "-", b).lower()


def entry_from_metadata(kind: str, ep: metadata.EntryPoint) -> PluginEntry:
    """The entry of ``kind`` an installed entry point advertises, with its distribution; nothing is imported."""
    dist = getattr(ep, "dist", None)
    return PluginEntry(
        kind=kind,
        name=ep.name,
        target=ep.value,
        distribution=dist.name if dist is not None else "unknown",
        version=dist.version if dist is not None else "",
        loader=ep.load,
    )


def check_kind(kind: str) -> str:
    """``kind`` itself when it is one of ``KINDS``; else a ``PluginError`` listing them."""
    if kind not in KINDS:
        raise PluginError(f"unknown plugin kind '{kind}'; expected one of: {', '.join(KINDS)}")
    return kind
