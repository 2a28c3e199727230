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

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from gankit.errors import ConfigError, GankitError, format_validation_error
from gankit.files import printable, split_key_value
from gankit.registry import Registry, registry, same_distribution, split_name

# -- from config.py ----------------------------------------------------------------------------------------------

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib


AmpMode = Literal["auto", "off", "bf16", "fp16"]
DeviceChoice = Literal["auto", "cpu", "cuda"]


class TrainConfig(BaseModel):
    """Everything that defines a training run. Field descriptions double as the CLI's help lines."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)  # --lr-g nan: "a finite number"

    generator: str = Field(
        "dcgan",
        description="Generator plugin name (see `gankit plugins`); the training settings it recommends (`gankit info "
        "generator NAME`) are used where none is given.",
    )
    discriminator: str | None = Field(None, description="Discriminator plugin name; defaults to the generator's.")
    loss: str = Field(
        "nonsat", description="Loss plugin name; the training settings it recommends win over the generator's."
    )
    dataset: str = Field("mnist", description="Dataset plugin name; `fake` gives random images for smoke tests.")
    generator_options: dict[str, Any] = Field(default_factory=dict, description="Options for the generator.")
    discriminator_options: dict[str, Any] = Field(default_factory=dict, description="Options for the discriminator.")
    loss_options: dict[str, Any] = Field(default_factory=dict, description="Options for the loss.")
    dataset_options: dict[str, Any] = Field(default_factory=dict, description="Options for the dataset.")
    epochs: int = Field(5, ge=1, le=1_000_000, description="Passes over the training set.")
    max_steps: int | None = Field(None, ge=1, description="Stop after this many generator steps, even mid-epoch.")
    batch_size: int = Field(64, ge=1, le=1_048_576, description="Images per batch.")
    lr_g: float = Field(1e-3, gt=0, le=1, description="Adam learning rate of the generator.")
    lr_d: float = Field(1e-3, gt=0, le=1, description="Adam learning rate of the discriminator.")
    betas: tuple[float, float] = Field((0.5, 0.999), description="Adam betas (beta1, beta2), each in [0, 1).")
    d_steps: int = Field(1, ge=1, le=100, description="Discriminator (critic) steps per generator step.")
    augment: str | None = Field(
        None,
        description="Differentiable augmentation before D, of real and fake images: a comma-separated policy of "
        "color, translation, cutout, and adaptive for ADA's tuned probability (e.g. translation,cutout,adaptive).",
    )
    lr_schedule: Literal["constant", "linear", "cosine"] = Field(
        "constant", description="Learning rates over the run: constant, or decayed to 0 at the last step."
    )
    lr_warmup: int = Field(0, ge=0, le=10_000_000, description="Steps over which both learning rates ramp up from 0.")
    latent_dim: int | None = Field(None, ge=1, le=100_000, description="Latent size Z_DIM (default: plugin's).")
    image_size: int | None = Field(None, ge=4, le=1024, description="Image side X_DIM (default: dataset's).")
    num_classes: int | None = Field(
        None, ge=0, le=100_000, description="Condition both models on this many classes (10 for MNIST labels)."
    )
    seed: int = Field(0, ge=0, le=2**63 - 1, description="Seed of the weights, the data order and the noise.")
    device: DeviceChoice = Field("auto", description="Where to train: auto picks CUDA when available.")
    amp: AmpMode = Field("auto", description="Mixed precision: auto is bf16 (or fp16) on CUDA, off on CPU.")
    channels_last: Literal["auto", "on", "off"] = Field(
        "auto",
        description="Channels-last memory format: auto uses it for models that prefer it (DCGAN), not under --compile.",
    )
    sync_batchnorm: bool = Field(
        False, description="Synchronise BatchNorm statistics across processes (multi-GPU runs)."
    )
    compile: bool = Field(False, description="Run the generator and discriminator through torch.compile.")
    out: Path | None = Field(None, description="Run folder (default: runs/<gen>-<loss>-<time>).")
    log_every: int = Field(50, ge=1, description="Steps between metric lines (and host synchronisations).")
    sample_count: int = Field(64, ge=1, le=1024, description="Images in each sample grid.")
    sample_every: int = Field(
        1, ge=1, le=1_000_000, description="Epochs between sample grids; the last epoch always gets one."
    )
    ema: bool = Field(True, description="Keep an EMA of G's weights (StyleGAN-style); sample, score and export it.")
    ema_kimg: float = Field(1.0, ge=0, le=1e6, description="EMA half-life in thousands of images.")
    ema_rampup: float | None = Field(0.05, ge=0, le=1, description="EMA ramp-up: half-life <= images seen x this.")
    eval_every: int | None = Field(
        None, ge=1, description="Score G (FD, KID, ... on the data's test split) every N steps and at the end."
    )
    eval_samples: int = Field(10_000, ge=100, le=100_000, description="Samples drawn for each evaluation.")
    checkpoint_every: int = Field(500, ge=1, description="Steps between checkpoints (also at every epoch end).")
    keep_checkpoints: int = Field(2, ge=1, le=1000, description="Checkpoints kept: the latest and older ones.")
    max_skipped_steps: int = Field(
        50, ge=1, description="Stop when fp16 gradient scaling skips this many steps in a row."
    )
    trackers: list[str] = Field(
        default_factory=list, description="Experiment trackers that also get the metrics, e.g. tensorboard."
    )
    tracker_options: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Options per tracker, {name: {key: value}}; see tracker_options_by_name."
    )

    @field_validator("betas")
    @classmethod
    def _betas_in_range(cls, betas: tuple[float, float]) -> tuple[float, float]:
        if not all(0.0 <= beta < 1.0 for beta in betas):
            raise ValueError("each beta must be in [0, 1)")
        return betas

    @model_validator(mode="before")
    @classmethod
    def _recommended_by_the_plugins(cls, values: Any, info: ValidationInfo) -> Any:
        """The settings the generator and the loss recommend (the loss's where both do) fill those the user left
        unset; a value given always wins."""
        if not isinstance(values, dict) or (info.context or {}).get("recommendations") is False:
            return values
        names = {kind: values.get(kind) or cls.model_fields[kind].default for kind in ("generator", "loss")}
        unset: dict[str, Any] = {}
        for who, recommended in recommended_settings(**names).items():
            used = {key: value for key, value in recommended.items() if values.get(key) is None}
            if not used:
                continue
            unset |= used  # in order: the loss's over the generator's
            try:
                cls.model_validate({**used, **names}, context={"recommendations": False})
            except ValidationError as exc:
                problem = format_validation_error(exc, what=f"the training settings {who} recommends")
                raise ConfigError(f"{problem}; its recommended_training needs fixing by its author") from None
        return {**values, **unset}

    @field_validator("augment")
    @classmethod
    def _augment_policy(cls, policy: str | None) -> str | None:
        if policy is None or policy.strip().lower() in ("", "none", "off"):
            return None
        from gankit.run._augment import parse_policy  # torch: not before a config is built

        return ",".join(parse_policy(policy))

    @field_validator("trackers")
    @classmethod
    def _trackers_once(cls, trackers: list[str]) -> list[str]:
        twice = sorted({name for name in trackers if trackers.count(name) > 1})
        if twice:
            raise ValueError(f"{', '.join(twice)} given more than once")
        return trackers

    @field_validator("tracker_options", mode="before")
    @classmethod
    def _tracker_options_by_name(cls, options: Any, info: ValidationInfo) -> Any:
        if not isinstance(options, Mapping) or not isinstance(info.data.get("trackers"), list):
            return options  # not a mapping: the type check says so; bad trackers: already reported
        return tracker_options_by_name(options, info.data["trackers"])

    @property
    def discriminator_name(self) -> str:
        """The discriminator defaults to the generator's namesake: for ``--gen DIST:NAME``, that distribution's
        discriminator ``NAME`` when it provides one, else whichever ``NAME`` is installed."""
        if self.discriminator:
            return self.discriminator
        distribution, plain = split_name(self.generator)
        if distribution is None or any(
            same_distribution(entry.distribution, distribution) for entry in registry.entries("discriminator")
            if entry.name == plain
        ):  # fmt: skip
            return self.generator
        return plain


def tracker_options_by_name(options: Mapping[str, Any], trackers: list[str]) -> dict[str, dict[str, Any]]:
    """``--tracker-opt`` values grouped by tracker: ``{"tensorboard": {"flush_secs": 5}}``.

    A key is ``NAME.KEY`` (``tensorboard.flush_secs``) or, with a single tracker, just ``KEY``; a value that is
    a mapping holds one tracker's options (the TOML table ``[tracker_options.tensorboard]``). Plain keys win over a
    table, since flags override the file. Raises ``ValueError`` naming a key that fits no tracker of ``trackers``.
    """
    by_name = {name.replace("-", "_"): name for name in trackers}  # --tracker-opt keys have - turned into _
    grouped: dict[str, dict[str, Any]] = {}
    tables = [(key, value) for key, value in options.items() if isinstance(value, Mapping)]
    plain = [(key, value) for key, value in options.items() if not isinstance(value, Mapping)]
    for key, value in tables:
        name = by_name.get(key.replace("-", "_"))
        if name is None:
            raise ValueError(f"options for '{key}', which is not one of the trackers ({', '.join(trackers) or 'none'})")
        grouped.setdefault(name, {}).update(value)
    for key, value in plain:
        prefix, dot, option = key.rpartition(".")
        if dot:
            name = by_name.get(prefix.replace("-", "_"))
            if name is None:
                raise ValueError(
                    f"'{key}' names '{prefix}', which is not one of the trackers ({', '.join(trackers) or 'none'})"
                )
        elif len(trackers) == 1:
            name, option = trackers[0], key
        elif not trackers:
            raise ValueError(f"'{key}' is set but no tracker is chosen; add --tracker NAME")
        else:
            raise ValueError(f"with {len(trackers)} trackers, say which one '{key}' is for: NAME.{key}")
        grouped.setdefault(name, {})[option] = value
    return grouped


def recommended_training(kind: str, name: str) -> dict[str, Any]:
    """What the plugin ``name`` of ``kind`` recommends (``recommended_training``); nothing for a name that does not
    load, which is reported where the run is assembled."""
    try:
        cls = registry.load(kind, name)
    except GankitError:
        return {}
    return dict(getattr(cls, "recommended_training", {}))


def recommended_settings(generator: str, loss: str) -> dict[str, dict[str, Any]]:
    """What the generator and the loss recommend, by who (``"loss 'minimax'"``), in the order they apply: where both
    recommend a setting, the later one, the loss, wins."""
    return {
        f"{kind} '{name}'": recommended_training(kind, name)
        for kind, name in (("generator", generator), ("loss", loss))
    }


def recommendations_in_use(config: TrainConfig) -> list[str]:
    """A line per plugin whose recommended settings the run trains with, for the start of a run: a recipe that is
    not the documented default should never be a surprise."""
    recommended = recommended_settings(config.generator, config.loss)
    winner = {key: who for who, settings in recommended.items() for key in settings}  # the last recommender wins
    lines = []
    for who, settings in recommended.items():
        used = {key: value for key, value in settings.items() if winner[key] == who and getattr(config, key) == value}
        if used:
            shown = ", ".join(f"{key}={value!r}" for key, value in sorted(used.items()))
            lines.append(f"training with what {who} recommends: {shown} (a flag overrides any of them)")
    return lines


def build_config(values: Mapping[str, Any]) -> TrainConfig:
    """Validate raw values into a ``TrainConfig``; every problem becomes one ``ConfigError`` line."""
    try:
        return TrainConfig.model_validate(dict(values))
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, what="training configuration")) from None


RESUMABLE = (
    "epochs",
    "max_steps",
    "log_every",
    "checkpoint_every",
    "keep_checkpoints",
    "eval_every",
    "eval_samples",
    "sample_every",
    "trackers",
    "tracker_options",
)
"""The settings a resumed run may change (``gankit.run``); any other must repeat the recorded value."""


MAX_CONFIG_BYTES = 1_000_000
"""The largest config file read: a real one is a few hundred bytes."""

MAX_CONFIG_DEPTH = 16
"""The deepest nesting of tables and arrays accepted in a config file (a real one nests two levels)."""


def read_toml(path: Path) -> dict[str, Any]:
    """The contents of a TOML config file, as data: nothing in it is ever executed.

    Whatever the file holds (another encoding, random bytes, arrays nested thousands deep, a number of a million
    digits) the outcome is its data or one ``ConfigError`` line.
    """
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist; check the path given to --config") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"config file {path} is larger than {MAX_CONFIG_BYTES:,} bytes; it is not a gankit config")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config file {path} is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
            "save it as UTF-8"
        ) from None
    try:
        values = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {printable(exc)}; fix the line it names") from None
    except RecursionError:
        raise ConfigError(_too_deep(path)) from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise ConfigError(f"config file {path} is not valid TOML: {printable(exc, limit=80)}") from None
    if _depth(values) > MAX_CONFIG_DEPTH:
        raise ConfigError(_too_deep(path))
    return values


def _too_deep(path: Path) -> str:
    return f"config file {path} nests tables or arrays more than {MAX_CONFIG_DEPTH} levels deep; flatten it"


def _depth(value: Any) -> int:
    """How deeply lists and dicts nest in ``value`` (0 for a scalar), without recursion."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
    return deepest


def parse_key_values(pairs: Iterable[str], *, flag: str) -> dict[str, Any]:
    """``["width=64", "dropout=0.3"]`` -> ``{"width": "64", ...}``; typing happens in the plugin's Options.

    A value that parses as JSON (numbers, true/false, lists) is passed as that, so ``betas=[0.5,0.9]`` works.
    """
    result: dict[str, Any] = {}
    for pair in pairs:
        key, value = split_key_value(pair, flag=flag)
        key = key.replace("-", "_")
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


# -- from resuming.py --------------------------------------------------------------------------------------------

PLUGIN_OPTIONS = {
    "generator_options": "generator",
    "discriminator_options": "discriminator",
    "loss_options": "loss",
    "dataset_options": "dataset",
}
"""The option tables compared key by key through their plugin's ``Options``: field -> plugin kind."""

RESOLVED_FROM_GENERATOR = ("image_size", "latent_dim", "num_classes")
"""Top-level settings that, left unset, took the value the generator's options resolved to at the start."""


def resume_config(
    recorded: Mapping[str, Any],
    given: Mapping[str, Any],
    *,
    out: Path,
    sources: Mapping[str, str] | None = None,
    plugins: Registry = registry,
) -> TrainConfig:
    """A run's ``recorded`` configuration (its ``config.json``) with only the ``RESUMABLE`` settings changed.

    ``given`` holds the settings the resuming command gives (``None``: not given), flags and ``--config`` file
    merged; those outside ``RESUMABLE`` must equal the recorded ones, or ``ConfigError`` names each difference.
    ``out`` is the run folder being resumed. ``sources`` says how each setting was given, for the message:
    ``{"seed": "--seed", "generator_options.width": "--gen-opt"}``; the key itself by default.
    """
    values = {key: recorded[key] for key in TrainConfig.model_fields if key in recorded}
    values.update(_recorded_plugins(recorded, plugins))
    values["out"] = str(out)
    base = build_config(values)
    given = {key: value for key, value in given.items() if value is not None}
    candidate = build_config({**values, **{key: value for key, value in given.items() if key not in PLUGIN_OPTIONS}})
    where = dict(sources or {})
    changes: list[tuple[str, str]] = []
    for key in TrainConfig.model_fields:
        if key not in given or key in RESUMABLE:
            continue
        if key in PLUGIN_OPTIONS:
            changes += _option_changes(base, key, given[key], where.get(key, key), where, plugins)
            continue
        was, now = _effective(base, key), getattr(candidate, key)
        if key == "out":
            was, now = Path(str(out)).expanduser().resolve(), Path(str(now)).expanduser().resolve()
        if key in PLUGIN_NAMES:
            if _same_plugin(was, now):
                continue  # the name as the run was started (dcgan), or as it resolved then (gankit:dcgan)
            was = recorded.get(key) or was  # shown as the run was started
        if was != now:
            changes.append((f"{key} was {_show(was)}, the command says {_show(now)}", where.get(key, key)))
    if changes:
        raise ConfigError(_refusal(changes))
    values.update({key: value for key, value in given.items() if key in RESUMABLE})
    return build_config(values)


RESOLVED_PLUGINS = "resolved_plugins"
"""The key of ``config.json`` that records, by kind, the ``DIST:NAME`` each plugin name resolved to."""

PLUGIN_NAMES = {"generator": "generator", "discriminator": "discriminator", "loss": "loss", "dataset": "dataset"}
"""The settings that name a plugin: field -> plugin kind."""


def _recorded_plugins(recorded: Mapping[str, Any], plugins: Registry) -> dict[str, str]:
    """The recorded plugin names, each as the plugin it resolved to when the run started: ``gankit:dcgan`` for a
    recorded ``dcgan`` from ``gankit``, while that distribution still provides it, so a package installed since that
    provides a ``dcgan`` too changes nothing for the run."""
    resolved = recorded.get(RESOLVED_PLUGINS)
    found: dict[str, str] = {}
    for field, kind in PLUGIN_NAMES.items():
        name, qualified = recorded.get(field), resolved.get(kind) if isinstance(resolved, dict) else None
        if not isinstance(name, str) or not isinstance(qualified, str) or split_name(name)[0] is not None:
            continue
        distribution, plain = split_name(qualified)
        if distribution is not None and plain == name:
            found[field] = plugins.recorded_name(kind, plain, distribution)
    return found


def _same_plugin(was: Any, now: Any) -> bool:
    """Whether two plugin names are the same plugin: the same name, and the same distribution where both say one."""
    if not isinstance(was, str) or not isinstance(now, str):
        return False
    (was_dist, was_name), (now_dist, now_name) = split_name(was), split_name(now)
    if was_name != now_name:
        return False
    return was_dist is None or now_dist is None or same_distribution(was_dist, now_dist)


def _effective(config: TrainConfig, key: str) -> Any:
    """What a recorded setting amounted to: its value, or what it resolved to when it was left unset."""
    value = getattr(config, key)
    if value is None and key == "discriminator":
        return config.discriminator_name
    if value is None and key in RESOLVED_FROM_GENERATOR:
        return config.generator_options.get(key)
    return value


def _option_changes(
    base: TrainConfig, field: str, given: Mapping[str, Any], source: str, where: Mapping[str, str], plugins: Registry
) -> list[tuple[str, str]]:
    """The options of ``given`` that differ from the recorded ones, once both are typed by the plugin's Options."""
    kind = PLUGIN_OPTIONS[field]
    name = base.discriminator_name if kind == "discriminator" else getattr(base, kind)
    recorded = getattr(base, field)
    before = plugins.options_for(kind, name, recorded)
    after = plugins.options_for(kind, name, {**recorded, **given})
    changes = []
    for option in given:
        was, now = getattr(before, option), getattr(after, option)
        if was != now:
            how = where.get(f"{field}.{option}", source)
            drop = f"{how} {option}={_show(now)}" if how.startswith("--") else f"{option} from {how}"
            changes.append((f"{kind} option {option} was {_show(was)}, the command says {_show(now)}", drop))
    return changes


def _show(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, (str, Path)):
        return str(value)
    return json.dumps(value, default=str)


def _refusal(changes: list[tuple[str, str]]) -> str:
    start = "--resume continues the run as configured: "
    if len(changes) == 1:
        ((change, source),) = changes
        return f"{start}{change}; drop {source} or start a new run"
    listed = "; ".join(f"{change} ({source})" for change, source in changes)
    return f"{start}{listed}; drop these or start a new run"
