"""The model card: where an exported generator came from (data, training, scores, versions), as one JSON object.

``gankit train`` records it in its run folder (``model_card.json``) and in every export it writes; ``gankit export``
carries it, with the user's ``--meta KEY=VALUE`` fields under ``user``; ``gankit info EXPORT`` prints it. In an export
it is the metadata key ``model_card`` (a JSON string), in an ONNX model the ``metadata_props`` entry of that name. A
complete card has every key of ``CARD_KEYS``, in that order; a value nobody knows is ``null`` (the data licence is
``"unknown"``). docs/export.md documents each key.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Mapping
from typing import Any

import torch

from gankit.errors import ConfigError, DataError, ExportError
from gankit.files import split_key_value
from gankit.interfaces import Generator, ImageData
from gankit.version import __version__

CARD_KEY = "model_card"
"""The export metadata key (and ONNX ``metadata_props`` key) holding the card as JSON."""

CARD_VERSION = 1
"""The card layout written today; a reader ignores keys it does not know."""

CARD_KEYS = (
    "card_version",
    "dataset",
    "data_license",
    "class_count",
    "class_names",
    "image_shape",
    "channel_order",
    "output_range",
    "steps",
    "epochs",
    "steps_per_epoch",
    "seed",
    "ema_weights",
    "last_scores",
    "best_scores",
    "gankit_version",
    "torch_version",
    "created",
    "user",
)
"""Every key of a complete card, in the order it is written and shown."""

CARD_FILE = "model_card.json"
"""The card's file in a run folder."""

UNKNOWN_LICENSE = "unknown"

MAX_USER_KEY = 100
"""The longest key of a user field (``--meta KEY=VALUE``)."""

CHANNEL_ORDERS = {1: "CHW, grayscale", 3: "CHW, RGB", 4: "CHW, RGBA"}
"""Channels -> how gankit's pictures (torchvision's ``save_image``) read them; channels first in every tensor."""

ModelCard = dict[str, Any]


def channel_order(channels: int) -> str:
    """``CHW, grayscale`` for one channel, ``CHW, RGB`` for three, ``CHW, RGBA`` for four."""
    return CHANNEL_ORDERS.get(channels, f"CHW, {channels} channels")


def run_card(*, dataset: str, data: ImageData, seed: int, steps_per_epoch: int) -> ModelCard:
    """What a run knows of its weights before the first step: the data they learn from and the seed."""
    names = data.class_names
    if names is not None and (len(names) != data.num_classes or not all(isinstance(name, str) for name in names)):
        raise DataError(
            f"dataset plugin '{dataset}' gives {len(names)} class names for {data.num_classes} classes; "
            "class_names needs one string per class"
        )
    if data.license is not None and not isinstance(data.license, str):
        raise DataError(f"dataset plugin '{dataset}' gives a licence that is not a string")
    return {
        "dataset": dataset,
        "data_license": data.license or UNKNOWN_LICENSE,
        "class_count": data.num_classes,
        "class_names": None if names is None else list(names),
        "seed": seed,
        "steps_per_epoch": steps_per_epoch,
    }


def at_step(
    card: Mapping[str, Any], *, step: int, ema_weights: bool, metrics: Iterable[Mapping[str, Any]]
) -> ModelCard:
    """The card of the weights at ``step``: steps, epochs and the scores logged up to it, stamped with now."""
    per_epoch = card.get("steps_per_epoch")
    epochs = round(step / per_epoch, 4) if type(per_epoch) is int and per_epoch > 0 else None
    last, best = scores_up_to(metrics, step)
    progress = {"steps": step, "epochs": epochs, "ema_weights": ema_weights, "last_scores": last, "best_scores": best}
    return {**card, **progress, **_stamp()}


def scores_up_to(metrics: Iterable[Mapping[str, Any]], step: int) -> tuple[ModelCard | None, ModelCard | None]:
    """The last evaluation logged at or before ``step`` and the best one (lowest Frechet distance); None if none."""
    rows = [
        row
        for row in metrics
        if type(row.get("step")) is int
        and row["step"] <= step
        and isinstance(row.get("eval/frechet_distance"), (int, float))
        and math.isfinite(row["eval/frechet_distance"])
    ]
    if not rows:
        return None, None

    def scores(row: Mapping[str, Any]) -> ModelCard:
        found = {key.removeprefix("eval/"): value for key, value in row.items() if key.startswith("eval/")}
        return {"step": row["step"], **{key: _finite(value) for key, value in found.items()}}

    return scores(rows[-1]), scores(min(rows, key=lambda row: float(row["eval/frechet_distance"])))


def with_user_fields(card: Mapping[str, Any] | None, fields: Mapping[str, str]) -> ModelCard:
    """``card`` with ``fields`` added to its ``user`` object (a field given again replaces the old value)."""
    card = dict(card or {})
    user = card.get("user")
    return {**card, "user": {**(user if isinstance(user, dict) else {}), **fields}}


def complete(card: Mapping[str, Any] | None, generator: Generator) -> ModelCard:
    """Every key of ``CARD_KEYS`` in order (then any other keys ``card`` has), the geometry from ``generator``, and
    versions and creation time filled in where ``card`` has none: what an export stores."""
    given = dict(card or {})
    full = {key: given.get(key) for key in CARD_KEYS} | given
    full["card_version"] = given.get("card_version") or CARD_VERSION
    full["image_shape"] = list(generator.image_shape)
    full["channel_order"] = channel_order(generator.image_shape[0])
    full["output_range"] = [-1, 1]
    full["data_license"] = full["data_license"] or UNKNOWN_LICENSE
    full["user"] = full["user"] if isinstance(full["user"], dict) else {}
    for key, value in _stamp().items():
        full[key] = full[key] or value
    return full


def model_card_json(card: Mapping[str, Any] | None, generator: Generator, *, limit: int) -> str:
    """The complete card as the JSON string an export stores; refused when longer than ``limit`` characters, the most
    an export's reader accepts in one metadata string."""
    try:
        text = json.dumps(complete(card, generator), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ExportError(f"the model card cannot be written as JSON: {exc}") from None
    if len(text) > limit:
        raise ExportError(
            f"the model card is {len(text):,} characters long, more than the {limit:,} an export may "
            "hold; shorten the --meta values"
        )
    return text


def _stamp() -> ModelCard:
    return {
        "gankit_version": __version__,
        "torch_version": torch.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: a non-finite score is written as null."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


# -- checking a card that was read --------------------------------------------------------------------------------


def _integer(value: Any, minimum: int) -> bool:
    return type(value) is int and value >= minimum


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _scores(value: Any) -> bool:
    return isinstance(value, dict) and all(
        isinstance(key, str) and (item is None or _number(item)) for key, item in value.items()
    )


CARD_TYPES: dict[str, tuple[str, Any]] = {
    "card_version": ("an integer from 1", lambda v: _integer(v, 1)),
    "dataset": ("a string or null", lambda v: v is None or isinstance(v, str)),
    "data_license": ("a string", lambda v: isinstance(v, str)),
    "class_count": ("an integer from 0, or null", lambda v: v is None or _integer(v, 0)),
    "class_names": (
        "a list of strings, or null",
        lambda v: v is None or (isinstance(v, list) and all(isinstance(name, str) for name in v)),
    ),
    "image_shape": (
        "a list of three positive integers",
        lambda v: isinstance(v, list) and len(v) == 3 and all(_integer(side, 1) for side in v),
    ),
    "channel_order": ("a string", lambda v: isinstance(v, str)),
    "output_range": ("a list of two numbers", lambda v: isinstance(v, list) and len(v) == 2 and all(map(_number, v))),
    "steps": ("an integer from 0, or null", lambda v: v is None or _integer(v, 0)),
    "epochs": ("a number, or null", lambda v: v is None or _number(v)),
    "steps_per_epoch": ("an integer from 1, or null", lambda v: v is None or _integer(v, 1)),
    "seed": ("an integer, or null", lambda v: v is None or type(v) is int),
    "ema_weights": ("true, false or null", lambda v: v is None or isinstance(v, bool)),
    "last_scores": ("an object of numbers, or null", lambda v: v is None or _scores(v)),
    "best_scores": ("an object of numbers, or null", lambda v: v is None or _scores(v)),
    "gankit_version": ("a string", lambda v: isinstance(v, str)),
    "torch_version": ("a string", lambda v: isinstance(v, str)),
    "created": ("a string", lambda v: isinstance(v, str)),
    "user": (
        "an object of strings",
        lambda v: isinstance(v, dict) and all(isinstance(item, str) for item in v.values()),
    ),
}
"""Each card key -> what its value must be, and the test: what docs/export.md's card table says of it."""


def card_problem(card: Mapping[str, Any]) -> str | None:
    """The first thing wrong with a card that was read (``model_card.json``, an export's ``model_card``): a key of
    the wrong type (``seed {'x': 1}``), or a card contradicting itself (``class_names`` and ``class_count``,
    ``epochs`` and ``steps``, scores from after ``steps``); None when it is sound. Keys it lacks, and keys it has
    that ``CARD_KEYS`` does not know, are not problems: older and newer cards read fine."""
    for key, (wanted, test) in CARD_TYPES.items():
        if key in card and not test(card[key]):
            return f"'{key}' is {json.dumps(card[key])[:60]}, not {wanted}"
    names, count = card.get("class_names"), card.get("class_count")
    if names is not None and count is not None and len(names) != count:
        return f"'class_names' has {len(names)} names for 'class_count' {count}"
    steps, per_epoch, epochs = card.get("steps"), card.get("steps_per_epoch"), card.get("epochs")
    if steps is not None and per_epoch is not None and epochs is not None and abs(epochs - steps / per_epoch) > 1e-3:
        return f"'epochs' is {epochs}, but 'steps' {steps} / 'steps_per_epoch' {per_epoch} is {steps / per_epoch:.4g}"
    for key in ("last_scores", "best_scores"):
        scored = (card.get(key) or {}).get("step")
        if steps is not None and scored is not None and (type(scored) is not int or scored > steps):
            return f"'{key}' are of step {scored}, after the card's 'steps' {steps}"
    return None


def card_contradiction(card: Mapping[str, Any], *, image_shape: Iterable[int], num_classes: int) -> str | None:
    """Where a card says otherwise than its export's metadata: the image shape, or (for a conditional generator,
    whose classes are the data's) the class count; None when they agree."""
    shape = list(image_shape)
    if card.get("image_shape") is not None and card["image_shape"] != shape:
        return f"its model card says image_shape {card['image_shape']} but its metadata says {shape}"
    count = card.get("class_count")
    if num_classes > 0 and count is not None and count != num_classes:
        return f"its model card says class_count {count} but its metadata says num_classes {num_classes}"
    return None


def parse_user_fields(pairs: Iterable[str], *, flag: str = "--meta") -> dict[str, str]:
    """``["owner=me", "note=a b"]`` -> ``{"owner": "me", "note": "a b"}``: user fields for a card, kept as strings."""
    fields: dict[str, str] = {}
    for pair in pairs:
        key, value = split_key_value(pair, flag=flag)
        if len(key) > MAX_USER_KEY or not key.isprintable():
            raise ConfigError(
                f"{flag} keys are at most {MAX_USER_KEY} printable characters; got {json.dumps(key)[:80]}"
            )
        fields[key] = value
    return fields
