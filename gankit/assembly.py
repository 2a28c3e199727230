"""Turn a ``TrainConfig`` into the pieces of a run: data, generator, discriminator and loss, checked to fit.

The top-level flags (``--image-size``, ``--latent-dim``) and what the dataset says (channels, number of classes)
fill in the plugins' options unless the user set those options explicitly; a disagreement between the two is
refused with one line rather than resolved silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gankit.config import TrainConfig
from gankit.errors import ConfigError
from gankit.interfaces import Dataset, Discriminator, Generator, ImageData, Loss
from gankit.registry import Registry, registry


@dataclass
class Assembly:
    """The built components of a run and the data they train on."""

    data: ImageData
    generator: Generator
    discriminator: Discriminator
    loss: Loss

    def resolved_options(self) -> dict[str, Any]:
        """Every plugin's final options, as recorded in the run's ``config.json``."""
        return {
            "generator_options": self.generator.options.model_dump(mode="json"),
            "discriminator_options": self.discriminator.options.model_dump(mode="json"),
            "loss_options": self.loss.options.model_dump(mode="json"),
        }


def _with_defaults(
    options: dict[str, Any], *, flags: dict[str, Any], derived: dict[str, Any], flag: str
) -> dict[str, Any]:
    """Plugin options as given, plus top-level ``flags`` (which must agree with them) and ``derived`` defaults."""
    merged = dict(options)
    for key, value in flags.items():
        if value is None:
            continue
        if key in merged and merged[key] != value:
            raise ConfigError(f"{flag} sets {key}={merged[key]!r} but the top-level flag says {value!r}; keep one")
        merged[key] = value
    for key, value in derived.items():
        merged.setdefault(key, value)
    return merged


def load_data(config: TrainConfig, *, plugins: Registry = registry) -> ImageData:
    dataset: Dataset = plugins.create("dataset", config.dataset, config.dataset_options)
    return dataset.load("train")


def assemble(config: TrainConfig, data: ImageData, *, plugins: Registry = registry) -> Assembly:
    """Build the generator, discriminator and loss the config names, for images like ``data``'s."""
    channels, native_size = int(data.images.shape[1]), int(data.images.shape[-1])
    image_size = config.image_size or config.generator_options.get("image_size") or native_size
    geometry = {"image_size": image_size, "channels": channels}
    generator: Generator = plugins.create(
        "generator",
        config.generator,
        _with_defaults(
            config.generator_options,
            flags={"image_size": config.image_size, "latent_dim": config.latent_dim, "num_classes": config.num_classes},
            derived=geometry,
            flag="--gen-opt",
        ),
    )
    discriminator: Discriminator = plugins.create(
        "discriminator",
        config.discriminator_name,
        _with_defaults(
            config.discriminator_options,
            flags={"image_size": config.image_size, "num_classes": config.num_classes},
            derived={**geometry, "num_classes": generator.num_classes},
            flag="--disc-opt",
        ),
    )
    loss: Loss = plugins.create("loss", config.loss, config.loss_options)
    check_compatible(generator, discriminator, data)
    return Assembly(data=data, generator=generator, discriminator=discriminator, loss=loss)


def check_compatible(generator: Generator, discriminator: Discriminator, data: ImageData) -> None:
    """One clear message for combinations that cannot train together."""
    if generator.image_shape != discriminator.image_shape:
        raise ConfigError(
            f"the generator makes images of shape {generator.image_shape} but the discriminator expects "
            f"{discriminator.image_shape}; give both the same image_size and channels"
        )
    if generator.image_shape[0] != data.images.shape[1]:
        raise ConfigError(
            f"the dataset has {data.images.shape[1]} channel(s) but the models use {generator.image_shape[0]}"
        )
    if discriminator.num_classes and not generator.num_classes:
        raise ConfigError("a conditional discriminator needs a conditional generator; set num_classes on both")
    if discriminator.num_classes not in (0, generator.num_classes):
        raise ConfigError(
            f"the generator conditions on {generator.num_classes} classes but the discriminator on "
            f"{discriminator.num_classes}; give both the same num_classes"
        )
    if generator.num_classes and generator.num_classes < data.num_classes:
        raise ConfigError(
            f"the dataset has {data.num_classes} classes but the generator conditions on "
            f"{generator.num_classes}; use num_classes={data.num_classes}"
        )
