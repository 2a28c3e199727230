"""A run's model card: ``RUN/model_card.json`` as training starts, and the card of each export made from the run."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gankit.errors import ConfigError
from gankit.export import CARD_FILE, ModelCard, at_step, card_problem, complete, run_card, with_user_fields
from gankit.files import atomic_write_bytes, read_regular
from gankit.interfaces import Generator, ImageData
from gankit.run._config import TrainConfig
from gankit.run._folder import RunFolder

MAX_CARD_BYTES = 1 << 24
"""A ``model_card.json`` larger than this is not a run's (an export refuses a card over 1,000,000 characters)."""


def record_run_card(
    run: RunFolder, *, config: TrainConfig, data: ImageData, generator: Generator, step: int, steps_per_epoch: int
) -> None:
    """Write ``RUN/model_card.json`` as training starts: the data and seed, and the steps taken so far."""
    card = run_card(dataset=config.dataset, data=data, seed=config.seed, steps_per_epoch=steps_per_epoch)
    card = at_step(card, step=step, ema_weights=config.ema, metrics=run.read_metrics())
    write_run_card(run, complete(card, generator))


def run_export_card(
    run: RunFolder,
    generator: Generator,
    *,
    step: int,
    ema_weights: bool,
    latest_scores: Mapping[str, float] | None = None,
    user: Mapping[str, str] | None = None,
) -> ModelCard:
    """The complete card of an export of ``run``'s weights at ``step``: the run's card (or, for a run recorded
    without one, what its ``config.json`` says) with the steps and the scores logged up to ``step``.

    ``latest_scores`` are scores computed at ``step`` but not logged yet; ``user`` adds user fields.
    """
    card = read_run_card(run)
    if card is None:
        config = run.read_config()
        card = {"dataset": config.get("dataset"), "seed": config.get("seed")}
    metrics = run.read_metrics()
    if latest_scores:
        metrics.append({"step": step, **{f"eval/{name}": value for name, value in latest_scores.items()}})
    card = at_step(card, step=step, ema_weights=ema_weights, metrics=metrics)
    return complete(with_user_fields(card, user or {}), generator)


def checkpoint_card(
    run: RunFolder,
    generator: Generator,
    *,
    ema_weights: bool,
    checkpoint: Path | None = None,
    user: Mapping[str, str] | None = None,
) -> ModelCard:
    """The card of an export made from ``run``'s checkpoint (the latest by default) by
    ``gankit.generator_source.generator_from_checkpoint``; ``ema_weights`` is what that says it loaded."""
    from gankit.files import read_checkpoint_metadata

    raw = read_checkpoint_metadata(checkpoint or run.checkpoint_path).get("step", "")
    step = int(raw) if raw.isdigit() else 0
    return run_export_card(run, generator, step=step, ema_weights=ema_weights, user=user)


def write_run_card(run: RunFolder, card: Mapping[str, Any]) -> None:
    """``RUN/model_card.json``, written atomically."""
    atomic_write_bytes(run.path / CARD_FILE, (json.dumps(card, indent=2) + "\n").encode("utf-8"))


def read_run_card(run: RunFolder) -> ModelCard | None:
    """``RUN/model_card.json``, or None for a run that has none."""
    path = run.path / CARD_FILE
    try:
        card = json.loads(read_regular(path, limit=MAX_CARD_BYTES))
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(
            f"cannot read {path}: {exc.strerror or exc}; delete it to export without the run's card"
        ) from None
    except (ValueError, RecursionError):
        raise ConfigError(f"{path} is not valid JSON; delete it to export without the run's card") from None
    if not isinstance(card, dict):
        raise ConfigError(f"{path} is not a JSON object; delete it to export without the run's card")
    problem = card_problem(card)  # an edited card is refused here, not copied into every export
    if problem is not None:
        raise ConfigError(f"{path} is damaged: {problem}; delete it to export without the run's card")
    return card


def record_scores(run: RunFolder, scores: Mapping[str, float]) -> bool:
    """Put scores ``gankit eval`` computed for ``run``'s export into that export's model card and ``model_card.json``:
    ``last_scores``, and ``best_scores`` when their Frechet distance is the best yet. False when the run has no export.

    The export is written again (atomically) with the same weights and metadata; only its card changes.
    """
    from gankit.export import load_generator, read_export_metadata, save_generator

    if not run.export_path.is_file():
        return False
    meta = read_export_metadata(run.export_path)
    card = dict(meta.model_card or {})
    entry = {"step": card.get("steps"), **scores}
    card["last_scores"] = entry
    best = card.get("best_scores")
    best_fd = best.get("frechet_distance") if isinstance(best, dict) else None
    if not isinstance(best_fd, (int, float)) or scores.get("frechet_distance", float("inf")) <= best_fd:
        card["best_scores"] = entry
    generator = load_generator(run.export_path)
    save_generator(generator, run.export_path, plugin_name=meta.plugin, extra=meta.extra, card=card, overwrite=True)
    write_run_card(run, complete(card, generator))
    return True
