"""The settings of scripts/frontier.py (issue 15), each on top of the defaults before issue 15, and its JSON files."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from gankit.run import TrainConfig, build_config

ROOT = Path(__file__).resolve().parents[1]
IMAGES = 60_000
SCORES = ("frechet_distance", "kid", "precision", "recall", "mnist_score", "modes_covered")
BUDGET_MINUTES = (1, 3, 10)
MARKER = "<!-- written by hand below; frontier.py table keeps it -->"

# gankit's defaults before issue 15 (G width 64, batch 128, Adam 2e-4 (0.5, 0.999)), pinned so that every setting
# below means what it meant when measured, whatever TrainConfig's defaults are now.
BEFORE = {"batch_size": 128, "lr_g": 2e-4, "lr_d": 2e-4, "betas": (0.5, 0.999)}
SEEDS_MODEL = {"generator_options": {"width": 128}, "discriminator_options": {"width": 64}}
SETTINGS: dict[str, dict[str, Any]] = {
    # name: config overrides on top of `gankit train --gen dcgan --loss nonsat --image-size 28` and BEFORE
    "seeds": {"pipeline": "seeds", **SEEDS_MODEL},  # pytorch/examples loop, batch 128, Adam 2e-4 (0.5, 0.999)
    "old-default": {},  # gankit's default before issue 15
    "g128": SEEDS_MODEL,
    "g128-b64": {**SEEDS_MODEL, "batch_size": 64},
    "g128-b32": {**SEEDS_MODEL, "batch_size": 32},
    "g64-b32": {"batch_size": 32},
    "g64-b64": {"batch_size": 64},
    "g128-b64-lr5": {**SEEDS_MODEL, "batch_size": 64, "lr_g": 5e-4, "lr_d": 5e-4},
    "g128-b32-lr5": {**SEEDS_MODEL, "batch_size": 32, "lr_g": 5e-4, "lr_d": 5e-4},
    "g128-b64-ttur": {**SEEDS_MODEL, "batch_size": 64, "lr_g": 2e-4, "lr_d": 6e-4},
    "g128-b64-ema": {**SEEDS_MODEL, "batch_size": 64, "ema": True, "ema_kimg": 1.0},
    "g128-b64-lr5-ema": {**SEEDS_MODEL, "batch_size": 64, "lr_g": 5e-4, "lr_d": 5e-4, "ema": True, "ema_kimg": 2.0},
    "g64-b64-lr5": {"batch_size": 64, "lr_g": 5e-4, "lr_d": 5e-4},  # the default since issue 15
    "g64-b64-lr5-ema": {"batch_size": 64, "lr_g": 5e-4, "lr_d": 5e-4, "ema": True, "ema_kimg": 2.0},
    "g128-b64-lr10": {**SEEDS_MODEL, "batch_size": 64, "lr_g": 1e-3, "lr_d": 1e-3},
    "g128-b64-b2": {**SEEDS_MODEL, "batch_size": 64, "betas": (0.5, 0.9)},
}


def settings_arg(text: str) -> list[str]:
    names = [name for name in text.split(",") if name]
    unknown = [name for name in names if name not in SETTINGS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown settings {unknown}; known: {', '.join(SETTINGS)}")
    return names


def config_for(name: str, **extra: Any) -> TrainConfig:
    values = {k: v for k, v in {**BEFORE, **SETTINGS[name]}.items() if k != "pipeline"}
    return build_config(
        {
            "generator": "dcgan",
            "loss": "nonsat",
            "image_size": 28,
            "device": "cpu",
            "sample_count": 64,
            **values,
            **extra,
        }
    )


def steps_per_epoch(name: str) -> int:
    config = config_for(name)
    return IMAGES // config.batch_size // config.d_steps


def cost_class(name: str) -> str:
    """Settings that differ only in learning rates, betas or EMA cost the same per step: they share one measurement.

    (The EMA update of DCGAN-28's G, 0.76M parameters at width 64, took 2.4 ms against a step of about 190 ms.)
    """
    if SETTINGS[name].get("pipeline") == "seeds":
        return "seeds"
    c = config_for(name)
    g, d = c.generator_options.get("width", 64), c.discriminator_options.get("width", 64)
    return f"G{g}-D{d}-b{c.batch_size}-d{c.d_steps}"


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {"runs": {}, "costs": {}}


def write_json(path: Path, results: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1) + "\n")
