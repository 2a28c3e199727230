"""Turn a ``TrainConfig`` into the pieces of a run: data, generator, discriminator and loss, checked to fit.

The top-level flags (``--image-size``, ``--latent-dim``) and what the dataset says (channels, number of classes)
fill in the plugins' options unless the user set those options explicitly; a disagreement between the two is
refused with one line rather than resolved silently.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import torch

from gankit.errors import ConfigError, PluginError
from gankit.interfaces import Discriminator, Generator, ImageData, Loss
from gankit.registry import (
    Registry,
    check_models,
    check_training_fits,
    load_split,
    on_meta,
    on_meta_only,
    registry,
)
from gankit.run._config import RESOLVED_PLUGINS, TrainConfig

log = logging.getLogger(__name__)


@dataclass
class Assembly:
    """The built components of a run and the data they train on."""

    data: ImageData
    generator: Generator
    discriminator: Discriminator
    loss: Loss
    who: dict[str, str] = field(default_factory=dict)
    """How messages name each part (``generator 'dcgan' from 'gankit' 0.1.0``), by kind, from the registry entry
    that built it: carried from the build on, so nothing re-resolves a name to learn who made a part. The dataset's
    is there too."""
    resolved: dict[str, str] = field(default_factory=dict)
    """The ``DIST:NAME`` each plugin name resolved to, by kind (``gankit:dcgan``): recorded in ``config.json``, so
    ``--resume`` picks the same plugins after another package starts providing one of their names."""

    def plugins(self) -> list[tuple[object, str]]:
        """``(plugin object, who)`` for the generator, discriminator and loss, for blaming a failure."""
        return [(self.generator, self.who["generator"]), (self.discriminator, self.who["discriminator"]),
                (self.loss, self.who["loss"])]  # fmt: skip

    def check_outputs(self) -> None:
        """The check before a run's first step: ``check_models`` on the generator and discriminator."""
        check_models(self.generator, self.discriminator, who_g=self.who["generator"], who_d=self.who["discriminator"])

    def resolved_options(self) -> dict[str, Any]:
        """Every plugin's final options, and the ``DIST:NAME`` each plugin name resolved to
        (``resolved_plugins``), as recorded in the run's ``config.json``."""
        return {
            "generator_options": self.generator.options.model_dump(mode="json"),
            "discriminator_options": self.discriminator.options.model_dump(mode="json"),
            "loss_options": self.loss.options.model_dump(mode="json"),
            RESOLVED_PLUGINS: dict(self.resolved),
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
    """The training split of the config's dataset, checked against the contract."""
    return load_split(config.dataset, "train", config.dataset_options, plugins=plugins)


def assemble(config: TrainConfig, data: ImageData, *, plugins: Registry = registry, precheck: bool = True) -> Assembly:
    """Build the generator, discriminator and loss the config names, for images like ``data``'s.

    They are first built on the meta device and checked (``check_assembly``), so models too large for this machine
    are refused before anything is allocated; ``precheck=False`` skips that (it is how the check builds them).
    """
    if precheck:
        check_assembly(config, data, plugins=plugins)
    channels, native_size = int(data.images.shape[1]), int(data.images.shape[-1])
    image_size = config.image_size or config.generator_options.get("image_size")
    if not image_size:  # the data's own size, or the nearest both models support
        image_size = fitted_size(config, native_size, plugins=plugins)
        if image_size != native_size and precheck:
            log.info(
                "The images are %dx%d; the models work at %dx%d, the nearest size %s supports (--image-size sets it)",
                native_size, native_size, image_size, image_size, config.generator,
            )  # fmt: skip
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
    check_compatible(generator, discriminator, data, dataset=config.dataset, plugins=plugins)
    entries = {
        kind: plugins.entry(kind, name)
        for kind, name in (("generator", config.generator), ("discriminator", config.discriminator_name),
                           ("loss", config.loss))
    }  # fmt: skip
    who = {kind: entry.who for kind, entry in entries.items()}
    resolved = {kind: entry.qualified_name for kind, entry in entries.items()}
    try:
        dataset = plugins.entry("dataset", config.dataset)
        who["dataset"], resolved["dataset"] = dataset.who, dataset.qualified_name
    except PluginError:  # data handed over without its plugin (a test, a notebook)
        who["dataset"] = f"dataset '{config.dataset}'"
    return Assembly(data=data, generator=generator, discriminator=discriminator, loss=loss, who=who, resolved=resolved)


def fitted_size(config: TrainConfig, native: int, *, plugins: Registry = registry) -> int:
    """The image side nearest ``native`` that the generator and the discriminator both accept with the config's
    options (the larger of two equally near); ``native`` itself when it fits, or when nothing does (the build then
    says why)."""

    def fits(size: int) -> bool:
        try:
            plugins.options_for("generator", config.generator, {**config.generator_options, "image_size": size})
            discriminator_options = {**config.discriminator_options, "image_size": size}
            plugins.options_for("discriminator", config.discriminator_name, discriminator_options)
        except ConfigError:
            return False
        return True

    if fits(native):
        return native
    for distance in range(1, 1024):
        for size in (native + distance, native - distance):
            if 4 <= size <= 1024 and fits(size):
                return size
    return native


def check_assembly(config: TrainConfig, data: ImageData, *, plugins: Registry = registry, processes: int = 1) -> None:
    """Everything ``assemble`` checks, with the models built on the meta device, so nothing is allocated: plugin
    names and options, the fit between the parts, and that training them fits in memory (``gankit.registry``).

    ``processes`` is how many copies of the run this machine will hold (``--nproc``).
    """
    names = (("generator", config.generator), ("discriminator", config.discriminator_name), ("loss", config.loss))
    for kind, name in names:
        try:
            plugins.load(kind, name)  # imported outside the meta context, so module-level tensors are real
        except PluginError as exc:
            if kind != "discriminator" or config.discriminator is not None:
                raise
            raise PluginError(
                f"--disc was not given, so it defaults to the generator's name '{config.generator}'; {exc} Name a "
                "discriminator with --disc NAME"
            ) from None
    try:
        with on_meta():
            planned = assemble(config, data, plugins=plugins, precheck=False)
    except Exception as exc:  # a constructor that reads tensor values cannot run on meta: the real build checks it
        if not on_meta_only(exc):
            raise
        return
    count, channels, native = len(data.images), int(data.images.shape[1]), int(data.images.shape[-1])
    size = planned.generator.image_shape[-1]
    device = torch.device("cuda" if config.device != "cpu" and torch.cuda.is_available() else "cpu")
    resized = count * channels * size * size if size != native or device.type != "cpu" else 0
    check_training_fits(
        planned.generator,
        planned.discriminator,
        names=(config.generator, config.discriminator_name),
        data_bytes=resized,
        ema=config.ema,
        device=device,
        processes=processes,
    )


def check_compatible(
    generator: Generator,
    discriminator: Discriminator,
    data: ImageData,
    *,
    dataset: str | None = None,
    plugins: Registry = registry,
) -> None:
    """One clear message for combinations that cannot train together, naming the plugins (and their distributions).

    ``dataset`` is the dataset plugin's name in the config, when known.
    """
    gen, disc = plugins.who_built("generator", generator), plugins.who_built("discriminator", discriminator)
    data_who = _who(plugins, "dataset", dataset)
    if generator.image_shape != discriminator.image_shape:
        raise ConfigError(
            f"{gen} makes images of shape {generator.image_shape} but {disc} expects "
            f"{discriminator.image_shape}; give both the same image_size and channels"
        )
    if generator.image_shape[0] != data.images.shape[1]:
        raise ConfigError(
            f"{data_who} has {data.images.shape[1]} channel(s) but the models use {generator.image_shape[0]}"
        )
    if discriminator.num_classes and not generator.num_classes:
        raise ConfigError(
            f"{disc} is conditional but {gen} is not; a conditional discriminator needs a conditional generator: "
            "set num_classes on both"
        )
    if generator.num_classes and not discriminator.num_classes:
        raise ConfigError(
            f"{gen} conditions on {generator.num_classes} classes but {disc} on none, so the labels would never "
            f"be trained; give the discriminator num_classes={generator.num_classes} too"
        )
    if discriminator.num_classes not in (0, generator.num_classes):
        raise ConfigError(
            f"{gen} conditions on {generator.num_classes} classes but {disc} on {discriminator.num_classes}; "
            "give both the same num_classes"
        )
    if generator.num_classes and not data.num_classes:
        raise ConfigError(
            f"{data_who} has no labels, so a model conditioned on {generator.num_classes} classes would only ever "
            "see label 0; drop --num-classes (and any num_classes option), or use labelled data (for --dataset "
            "folder: one subfolder per class)"
        )
    if generator.num_classes and generator.num_classes < data.num_classes:
        raise ConfigError(
            f"{data_who} has {data.num_classes} classes but {gen} conditions on {generator.num_classes}; "
            f"use num_classes={data.num_classes}"
        )


def _who(plugins: Registry, kind: str, name: str | None) -> str:
    """How messages name plugin ``name`` of ``kind``: ``dataset 'mnist' from 'gankit' 0.1.0``, or plainly."""
    if name is None:
        return f"the {kind}"
    try:
        return plugins.entry(kind, name).who
    except PluginError:
        return f"{kind} '{name}'"
