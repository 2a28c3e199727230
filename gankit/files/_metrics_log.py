"""``metrics.jsonl``: one JSON object per log line, its fields, and reading it back with every line's shape checked.

The file is written by the run and read back by ``--resume``, ``gankit export`` and the loss plot; a line a person
or a crash damaged is reported as one line naming the file and the line, never as a traceback further on.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gankit.errors import FileFormatError
from gankit.files._atomic import NotRegularFile, read_regular

STAT_NAMES = ("d_loss", "g_loss", "d_real_logit", "d_fake_logit")
"""What the engine sums on the device each step: both losses and the mean raw logits on the real and fake batch."""

ENGINE_FIELDS = frozenset(
    {*STAT_NAMES, "step", "epoch", "images_per_sec", "elapsed_s", "peak_memory_mb", "fp16_skipped_steps"}
)
"""The fields of a ``metrics.jsonl`` line that gankit itself writes; a loss's metric may not reuse one."""

MAX_METRICS_BYTES = 1 << 30
"""A metrics log larger than this is not a run's (a run logs about 300 bytes a line)."""


def loss_metric_names(row: Mapping[str, object]) -> list[str]:
    """The fields of a metrics line that a loss reported: neither gankit's own nor a score (``eval/...``)."""
    return [name for name in row if name not in ENGINE_FIELDS and "/" not in name]


def _line_problem(row: Any) -> str | None:
    if not isinstance(row, dict):
        return f"is a JSON {type(row).__name__}, not an object"
    step = row.get("step")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        return f"has step {step!r}, not a whole number of steps"
    for key, value in row.items():
        if not isinstance(key, str):
            return "has a key that is not text"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"has {key!r} = {value!r}, not a number"
        if isinstance(value, float) and math.isnan(value) and key in ("step", "epoch"):
            return f"has {key!r} = NaN"
    return None


def read_metrics_log(path: Path) -> list[dict[str, Any]]:
    """The logged lines of ``path``, each checked to be an object with a whole ``step`` and numeric values.

    A missing file is an empty log. A last line cut short by a kill is dropped; any other damage is a
    ``FileFormatError`` naming the file and the line.
    """
    try:
        raw = read_regular(path, limit=MAX_METRICS_BYTES)
    except FileNotFoundError:
        return []
    except NotRegularFile as exc:
        raise FileFormatError(
            f"{path} is not a run's metrics log: {exc.strerror}; move it away to start a new log, or restore the run's"
        ) from None
    except OSError as exc:
        raise FileFormatError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad_line = raw[: exc.start].count(b"\n") + 1
        raise FileFormatError(f"{path} is damaged: line {bad_line} is not UTF-8 text") from None
    lines = [(number, line) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]
    rows = []
    for index, (number, content) in enumerate(lines):
        last = index == len(lines) - 1
        try:
            row = json.loads(content)
        except ValueError:
            if last:
                break
            raise FileFormatError(f"{path} is damaged: line {number} is not JSON") from None
        problem = _line_problem(row)
        if problem is not None:
            raise FileFormatError(f"{path} is damaged: line {number} {problem}")
        rows.append(row)
    return rows
