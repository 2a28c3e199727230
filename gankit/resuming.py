"""Resuming a run with the command that started it: values equal to the recorded ones pass, a change is refused.

``gankit train ORIGINAL FLAGS --resume RUN`` is what users type. Every setting the command gives is compared with
the run's ``config.json`` after normalisation: typed as ``TrainConfig`` and the plugins' ``Options`` type them
(``--lr-g 0.0002`` is ``2e-4``, ``--gen-opt width=64`` is the recorded ``64``, an option left at its default equals
that default), top-level settings left unset at the start compared with what they resolved to (``--image-size
28`` with the 28 taken from the data, ``--disc dcgan`` with the generator's namesake), ``--out`` with the run
folder. Only the ``RESUMABLE`` settings may differ; any other difference is one ``ConfigError`` line naming the
key, the recorded value and the new one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gankit.config import RESUMABLE, TrainConfig, build_config
from gankit.errors import ConfigError
from gankit.registry import Registry, registry

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
        if was != now:
            changes.append((f"{key} was {_show(was)}, the command says {_show(now)}", where.get(key, key)))
    if changes:
        raise ConfigError(_refusal(changes))
    values.update({key: value for key, value in given.items() if key in RESUMABLE})
    return build_config(values)


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
