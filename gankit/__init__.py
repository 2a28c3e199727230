"""gankit: a pluggable GAN framework for PyTorch."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gankit.version import __version__

if TYPE_CHECKING:
    from gankit.export import load_generator

__all__ = ["__version__", "load_generator"]


def __getattr__(name: str) -> Any:
    """Import heavy parts on first use, so ``import gankit`` (and the CLI's startup) stays instant."""
    if name == "load_generator":
        from gankit.export import load_generator

        return load_generator
    raise AttributeError(f"module 'gankit' has no attribute {name!r}")
