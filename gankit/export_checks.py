"""What an export says about itself, checked before any plugin is built: its recorded geometry against its own
options, and that its latents and outputs are of the kind gankit samples. ``gankit.export``'s loader calls these."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gankit.errors import ExportError, PluginError
from gankit.registry import registry
from gankit.text import printable

if TYPE_CHECKING:
    from gankit.export import ExportMetadata

SUPPORTED_OUTPUT_RANGE = (-1.0, 1.0)
"""The only range of generated values gankit samples, clamps and pictures."""


def check_against_options(
    path: Path, options: Mapping[str, Any], *, latent_dim: int, image_shape: list[int], num_classes: int
) -> None:
    """The recorded geometry is what the recorded options say, by the meaning ``GeneratorOptions`` gives its fields
    (checked where the options have the field): a file contradicting itself is refused before any plugin is built."""
    channels, height, width = image_shape
    implied = {
        "latent_dim": ("latent_dim", latent_dim),
        "num_classes": ("num_classes", num_classes),
        "channels": ("image_shape", channels),
        "image_size": ("image_shape", height),
    }
    if height != width:  # not the square of side image_size: a plugin with its own geometry, checked once built
        del implied["image_size"]
    for option, (key, recorded) in implied.items():
        if option in options and options[option] != recorded:
            shown = json.dumps(options[option])[:40]
            said = image_shape if key == "image_shape" else recorded
            raise ExportError(
                f"{path} is a damaged gankit export: metadata '{key}' is {said} but plugin_options say {option}={shown}"
            )


def check_supported(path: Path, meta: ExportMetadata) -> None:
    """The file's images and latents are the kind gankit samples: outputs in [-1, 1], and latents from the prior the
    installed plugin class declares (``standard_normal`` unless it says otherwise). Anything else would be sampled
    wrongly without a word, so it is refused."""
    if meta.output_range != SUPPORTED_OUTPUT_RANGE:
        shown = [float(bound) for bound in meta.output_range]
        raise ExportError(
            f"{path} records output_range {shown}, which gankit does not support (only [-1, 1]); "
            "export the generator again with gankit"
        )
    try:
        declared = getattr(registry.load("generator", meta.plugin), "latent_distribution", None)
    except PluginError:
        return  # not installed or broken: building it says so, with what to install
    if isinstance(declared, str) and meta.latent_distribution != declared:
        raise ExportError(
            f"{path} records latent_distribution '{printable(meta.latent_distribution, limit=40)}', but generator "
            f"plugin '{printable(meta.plugin, limit=80)}' draws its latents from '{printable(declared, limit=40)}'; "
            "export the generator again with the plugin version that trained it"
        )
