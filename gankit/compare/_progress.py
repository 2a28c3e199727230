"""What a compare tells the outside world while it runs: one rich bar over every run, plain lines, or nothing.

The bar counts training steps over all (arm, seed) runs, names the runs in progress and estimates the time left;
a line is printed as each run ends. Off a terminal, only those lines. Each run's own training reports through
``JobReporter``, which forwards its steps and warnings here.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, Protocol, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from gankit.compare._plan import Job
from gankit.run import SilentReporter


class CompareProgress(Protocol):
    """The events of a compare, in order: cost rounds, then the runs (each started and ended, or kept)."""

    def costs(self, done: int, rounds: int) -> None:
        """Cost round ``done`` (0: the warm-up) of ``rounds`` is measured."""

    def start(self, jobs: Sequence[Job], steps_done: dict[str, int]) -> None:
        """The runs are about to train; ``steps_done`` has the steps already done, by job label."""

    def job_start(self, job: Job, step: int) -> None: ...

    def job_step(self, job: Job, step: int) -> None: ...

    def job_end(self, job: Job, line: str) -> None:
        """``job`` is finished (``line`` says how it went), or was finished before and is kept."""

    def warn(self, message: str) -> None: ...

    def close(self) -> None: ...


class SilentProgress:
    """Reports nothing: for library use, tests and ``--quiet``."""

    def costs(self, done: int, rounds: int) -> None:
        pass

    def start(self, jobs: Sequence[Job], steps_done: dict[str, int]) -> None:
        pass

    def job_start(self, job: Job, step: int) -> None:
        pass

    def job_step(self, job: Job, step: int) -> None:
        pass

    def job_end(self, job: Job, line: str) -> None:
        pass

    def warn(self, message: str) -> None:
        pass

    def close(self) -> None:
        pass


class PlainProgress:
    """A line per cost round and per run (started, ended), flushed at once: for logs, pipes and CI."""

    def __init__(self, stream: TextIO | None = None, errors: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self.errors = errors or sys.stderr
        self.count = 0
        self.finished = 0

    def _print(self, line: str, *, error: bool = False) -> None:
        print(line, file=self.errors if error else self.stream, flush=True)

    def costs(self, done: int, rounds: int) -> None:
        self._print(f"measuring costs: round {done}/{rounds}" + (" (warm-up)" if done == 0 else ""))

    def start(self, jobs: Sequence[Job], steps_done: dict[str, int]) -> None:
        self.count = len(jobs)

    def job_start(self, job: Job, step: int) -> None:
        resumed = f", resumed at step {step}" if step else ""
        self._print(f"{job.label}: training {job.total_steps} steps into {job.run_dir}{resumed}")

    def job_step(self, job: Job, step: int) -> None:
        pass

    def job_end(self, job: Job, line: str) -> None:
        self.finished += 1
        self._print(f"[{self.finished}/{self.count}] {job.label}: {line}")

    def warn(self, message: str) -> None:
        self._print(f"warning: {message}", error=True)

    def close(self) -> None:
        pass


class RichProgress:
    """One live bar over the steps of every run, with the runs in progress, the runs done and the time left."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[runs]}"),
            TimeElapsedColumn(),
            TextColumn("elapsed,"),
            TimeRemainingColumn(),
            TextColumn("left"),
            console=self.console,
        )
        self.task: Any = None
        self.steps: dict[str, int] = {}
        self.running: list[str] = []
        self.count = 0
        self.finished = 0

    def costs(self, done: int, rounds: int) -> None:
        if self.task is None:
            self.progress.start()
            self.task = self.progress.add_task("measuring the cost of a step", total=rounds + 1, runs="")
        self.progress.update(self.task, completed=done + 1, runs=f"round {done}/{rounds}")

    def start(self, jobs: Sequence[Job], steps_done: dict[str, int]) -> None:
        if self.task is not None:
            self.progress.remove_task(self.task)
        else:
            self.progress.start()
        self.steps = {job.label: steps_done.get(job.label, 0) for job in jobs}
        self.count = len(jobs)
        self.finished = 0
        total = sum(job.total_steps for job in jobs)
        self.task = self.progress.add_task("compare", total=total, completed=sum(self.steps.values()), runs="")

    def _refresh(self) -> None:
        self.progress.update(
            self.task,
            completed=sum(self.steps.values()),
            description=", ".join(self.running) or "compare",
            runs=f"runs done {self.finished}/{self.count}",
        )

    def job_start(self, job: Job, step: int) -> None:
        self.running.append(job.label)
        self.steps[job.label] = step
        self._refresh()

    def job_step(self, job: Job, step: int) -> None:
        self.steps[job.label] = step
        self._refresh()

    def job_end(self, job: Job, line: str) -> None:
        if job.label in self.running:
            self.running.remove(job.label)
        self.steps[job.label] = job.total_steps
        self.finished += 1
        self.progress.console.print(f"{job.label}: {line}")
        self._refresh()

    def warn(self, message: str) -> None:
        self.progress.console.print(f"[yellow]warning:[/yellow] {message}")

    def close(self) -> None:
        self.progress.stop()


class JobReporter(SilentReporter):
    """A run's training reporter (``gankit.run``'s ``Reporter``) that forwards its steps and warnings to the
    compare's progress, and is silent otherwise."""

    def __init__(self, progress: CompareProgress, job: Job) -> None:
        self.compare_progress = progress
        self.job = job

    def log(self, metrics: dict[str, Any]) -> None:
        self.compare_progress.job_step(self.job, int(metrics["step"]))

    def warn(self, message: str) -> None:
        self.compare_progress.warn(f"{self.job.label}: {message}")
