"""The training configuration: one typed, validated object built at the edge and passed inside as is.

A run is described by ``TrainConfig``; it comes from a TOML file, command-line flags (which override the file) or
Python. Strings from the command line become typed values here and only here.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gankit.errors import ConfigError, format_validation_error

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib


AmpMode = Literal["auto", "off", "bf16", "fp16"]
DeviceChoice = Literal["auto", "cpu", "cuda"]


class TrainConfig(BaseModel):
    """Everything that defines a training run. Field descriptions double as the CLI's help lines."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    generator: str = Field("dcgan", description="Generator plugin name (see `gankit plugins`).")
    discriminator: str | None = Field(None, description="Discriminator plugin name; defaults to the generator's.")
    loss: str = Field("nonsat", description="Loss plugin name.")
    dataset: str = Field("mnist", description="Dataset plugin name; `fake` gives random images for smoke tests.")
    generator_options: dict[str, Any] = Field(default_factory=dict, description="Options for the generator.")
    discriminator_options: dict[str, Any] = Field(default_factory=dict, description="Options for the discriminator.")
    loss_options: dict[str, Any] = Field(default_factory=dict, description="Options for the loss.")
    dataset_options: dict[str, Any] = Field(default_factory=dict, description="Options for the dataset.")
    epochs: int = Field(5, ge=1, le=1_000_000, description="Passes over the training set.")
    max_steps: int | None = Field(None, ge=1, description="Stop after this many generator steps, even mid-epoch.")
    batch_size: int = Field(128, ge=1, le=1_048_576, description="Images per batch.")
    lr_g: float = Field(2e-4, gt=0, le=1, description="Adam learning rate of the generator.")
    lr_d: float = Field(2e-4, gt=0, le=1, description="Adam learning rate of the discriminator.")
    betas: tuple[float, float] = Field((0.5, 0.999), description="Adam betas (beta1, beta2), each in [0, 1).")
    d_steps: int = Field(1, ge=1, le=100, description="Discriminator (critic) steps per generator step.")
    latent_dim: int | None = Field(None, ge=1, le=100_000, description="Latent size Z_DIM (default: plugin's).")
    image_size: int | None = Field(None, ge=4, le=1024, description="Image side X_DIM (default: dataset's).")
    num_classes: int | None = Field(
        None, ge=0, le=100_000, description="Condition both models on this many classes (10 for MNIST labels)."
    )
    seed: int = Field(0, ge=0, le=2**63 - 1, description="Seed of the weights, the data order and the noise.")
    device: DeviceChoice = Field("auto", description="Where to train: auto picks CUDA when available.")
    amp: AmpMode = Field("auto", description="Mixed precision: auto is bf16 (or fp16) on CUDA, off on CPU.")
    channels_last: Literal["auto", "on", "off"] = Field(
        "auto", description="Channels-last memory format: auto uses it for models that prefer it (DCGAN)."
    )
    sync_batchnorm: bool = Field(
        False, description="Synchronise BatchNorm statistics across processes (multi-GPU runs)."
    )
    compile: bool = Field(False, description="Run the generator and discriminator through torch.compile.")
    out: Path | None = Field(None, description="Run folder (default: runs/<gen>-<loss>-<time>).")
    log_every: int = Field(50, ge=1, description="Steps between metric lines (and host synchronisations).")
    sample_count: int = Field(64, ge=1, le=1024, description="Images in each sample grid.")
    ema: bool = Field(False, description="Keep an EMA of G's weights (StyleGAN-style); sample, score and export it.")
    ema_kimg: float = Field(10.0, ge=0, le=1e6, description="EMA half-life in thousands of images.")
    ema_rampup: float | None = Field(0.05, ge=0, le=1, description="EMA ramp-up: half-life <= images seen x this.")
    eval_every: int | None = Field(
        None, ge=1, description="Score G (MNIST FD, KID, ...) every N steps and at the end; keep the best by FD."
    )
    eval_samples: int = Field(10_000, ge=100, le=100_000, description="Samples drawn for each evaluation.")
    checkpoint_every: int = Field(500, ge=1, description="Steps between checkpoints (also at every epoch end).")
    keep_checkpoints: int = Field(2, ge=1, le=1000, description="Checkpoints kept: the latest and older ones.")
    max_skipped_steps: int = Field(
        50, ge=1, description="Stop when fp16 gradient scaling skips this many steps in a row."
    )

    @field_validator("betas")
    @classmethod
    def _betas_in_range(cls, betas: tuple[float, float]) -> tuple[float, float]:
        if not all(0.0 <= beta < 1.0 for beta in betas):
            raise ValueError("each beta must be in [0, 1)")
        return betas

    @property
    def discriminator_name(self) -> str:
        """The discriminator defaults to the generator's namesake."""
        return self.discriminator or self.generator


def build_config(values: Mapping[str, Any]) -> TrainConfig:
    """Validate raw values into a ``TrainConfig``; every problem becomes one ``ConfigError`` line."""
    try:
        return TrainConfig.model_validate(dict(values))
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, what="training configuration")) from None


RESUMABLE = ("epochs", "max_steps", "log_every", "checkpoint_every", "keep_checkpoints", "eval_every", "eval_samples")
"""The settings a resumed run may change; anything else would make it a different run."""


def resume_config(recorded: Mapping[str, Any], overrides: Mapping[str, Any], *, out: Path) -> TrainConfig:
    """A run's ``recorded`` configuration (its ``config.json``) with only the ``RESUMABLE`` settings changed.

    ``overrides`` are the settings given again (``None``: not given); ``out`` is the run folder being resumed.
    """
    changed = sorted(key for key, value in overrides.items() if value is not None and key not in RESUMABLE)
    if changed:
        raise ConfigError(
            f"--resume continues a run as configured; these cannot change: {', '.join(changed)} "
            f"(allowed: {', '.join(RESUMABLE)})"
        )
    values = {key: recorded[key] for key in TrainConfig.model_fields if key in recorded}
    values.update({key: value for key, value in overrides.items() if value is not None})
    values["out"] = str(out)
    return build_config(values)


def read_toml(path: Path) -> dict[str, Any]:
    """The contents of a TOML config file, as data: nothing in it is ever executed."""
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist; check the path given to --config") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}; fix the line it names") from None


def parse_key_values(pairs: Iterable[str], *, flag: str) -> dict[str, Any]:
    """``["width=64", "dropout=0.3"]`` -> ``{"width": "64", ...}``; typing happens in the plugin's Options.

    A value that parses as JSON (numbers, true/false, lists) is passed as that, so ``betas=[0.5,0.9]`` works.
    """
    result: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ConfigError(f"{flag} expects KEY=VALUE, got '{pair}'")
        try:
            result[key] = json.loads(value)
        except json.JSONDecodeError:
            result[key] = value
    return result


def merge_config(file_values: Mapping[str, Any], flag_values: Mapping[str, Any]) -> dict[str, Any]:
    """Flags override the file; option dictionaries are merged key by key so both can contribute."""
    merged = dict(file_values)
    for key, value in flag_values.items():
        if value is None:
            continue
        if key.endswith("_options") and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged
