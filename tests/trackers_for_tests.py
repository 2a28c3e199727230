"""Tracker plugins that exist only for the tests, written as a third-party author would, against gankit.interfaces.

``CSVTracker`` is the example of the plugin guide (docs/plugins.md, "A tracker"): the shape an MLflow or W&B tracker
takes too. ``BrokenTracker`` fails on purpose, to show that a tracker can never stop training.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field

from gankit.interfaces import Tracker, TrackerOptions


class CSVTrackerOptions(TrackerOptions):
    """Options of the CSV tracker."""

    filename: str = Field("scalars.csv", min_length=1, description="File in the run folder the rows go to.")


class CSVTracker(Tracker):
    """One ``step,name,value`` row per scalar, in a CSV file of the run folder."""

    Options = CSVTrackerOptions
    options: CSVTrackerOptions

    def start(self, run_dir: Path, hyperparameters: Mapping[str, Any], *, resumed_at_step: int) -> None:
        path = run_dir / self.options.filename
        kept = [["step", "name", "value"]]
        if resumed_at_step and path.exists():  # keep the rows up to the checkpoint; later ones are trained again
            with path.open(newline="") as old:
                kept += [row for row in list(csv.reader(old))[1:] if int(row[0]) <= resumed_at_step]
        self.file = path.open("w", newline="")
        self.rows = csv.writer(self.file)
        self.rows.writerows(kept)

    def log_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        self.rows.writerows([step, name, value] for name, value in scalars.items())
        self.file.flush()

    def close(self) -> None:
        self.file.close()


class BrokenTracker(Tracker):
    """Logs the first line, then raises on every call after it; counts what it was asked to do."""

    calls: list[str] = []  # noqa: RUF012 - the tests read it from the class

    def start(self, run_dir: Path, hyperparameters: Mapping[str, Any], *, resumed_at_step: int) -> None:
        BrokenTracker.calls.append("start")

    def log_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        BrokenTracker.calls.append("log_scalars")
        if BrokenTracker.calls.count("log_scalars") > 1:
            raise ConnectionError("the tracking server went away")

    def close(self) -> None:
        BrokenTracker.calls.append("close")
