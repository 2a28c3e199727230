"""What training tells the outside world: the reporter protocol, the silent, rich and plain reporters, the result."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from gankit.files import loss_metric_names


def warn_on_stderr(message: str) -> None:
    """A warning where nothing else reports: one ``warning:`` line on stderr."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


class Reporter(Protocol):
    """What the engine tells the outside world; the CLI shows it with rich, tests may record it."""

    def start(self, *, total_steps: int, steps_per_epoch: int, epochs: int, run_dir: Path, start_step: int = 0) -> None:
        """The run begins at ``start_step`` (0 for a fresh run, the checkpoint's step for a resumed one) and ends at
        ``total_steps``; ``epochs`` is what the config asked for, which ``--max-steps`` may cut short."""

    def log(self, metrics: dict[str, Any]) -> None: ...

    def epoch_end(self, epoch: int, grid_path: Path | None) -> None:
        """Epoch ``epoch`` (from 0) is done; ``grid_path`` is its sample grid, ``None`` when ``--sample-every``
        skipped it."""

    def last_grid(self, step: int, epochs: float, grid_path: Path | None) -> None:
        """The run ended at ``step`` in the middle of an epoch (``--max-steps``), ``epochs`` epochs in; its last
        sample grid is at ``grid_path``."""

    def warn(self, message: str) -> None: ...

    def finish(self, result: TrainResult) -> None: ...


class SilentReporter:
    """Reports nothing: for library use and tests."""

    def start(self, *, total_steps: int, steps_per_epoch: int, epochs: int, run_dir: Path, start_step: int = 0) -> None:
        pass

    def log(self, metrics: dict[str, Any]) -> None:
        pass

    def epoch_end(self, epoch: int, grid_path: Path | None) -> None:
        pass

    def last_grid(self, step: int, epochs: float, grid_path: Path | None) -> None:
        pass

    def warn(self, message: str) -> None:
        pass

    def finish(self, result: TrainResult) -> None:
        pass


@dataclass
class TrainResult:
    """Where a finished run left its files, and how it went."""

    run_dir: Path
    export_path: Path
    steps: int
    epochs_completed: int
    seconds: float
    final_metrics: dict[str, Any] = field(default_factory=dict)


class RichReporter:
    """Shows one live bar over all steps, with the losses, the mean logits and the loss's own metrics (as last
    logged); prints a line per epoch with the sample grid's path."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.progress = Progress(
            TextColumn("[bold]epoch {task.fields[epoch]}/{task.fields[epochs]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("D {task.fields[d_loss]} G {task.fields[g_loss]}"),
            TextColumn("logits real {task.fields[d_real_logit]} fake {task.fields[d_fake_logit]}"),
            TextColumn("{task.fields[loss_metrics]}"),
            TextColumn("{task.fields[speed]} img/s"),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self.task: Any = None
        self.steps_per_epoch = 1
        self.planned = 1.0
        self.measured: dict[str, float] = {}

    def start(self, *, total_steps: int, steps_per_epoch: int, epochs: int, run_dir: Path, start_step: int = 0) -> None:
        self.steps_per_epoch = steps_per_epoch
        self.planned = planned_epochs(total_steps, steps_per_epoch, epochs)
        self.console.print(f"[bold]gankit[/bold] {start_line(run_dir, total_steps, steps_per_epoch, start_step)}")
        self.progress.start()
        self.task = self.progress.add_task(
            "train",
            total=total_steps,
            completed=start_step,
            epoch=shown_epoch(start_step / steps_per_epoch, self.planned),
            epochs=shown_epochs(self.planned),
            d_loss="-",
            g_loss="-",
            d_real_logit="-",
            d_fake_logit="-",
            loss_metrics="",
            speed="-",
        )

    def log(self, metrics: dict[str, Any]) -> None:
        # a metric the loss reports only every k steps keeps its last value until it is reported again
        self.measured.update((name, metrics[name]) for name in loss_metric_names(metrics))
        self.progress.update(
            self.task,
            completed=metrics["step"],
            epoch=shown_epoch(metrics["epoch"], self.planned),
            d_loss=f"{metrics['d_loss']:.3f}",
            g_loss=f"{metrics['g_loss']:.3f}",
            d_real_logit=f"{metrics['d_real_logit']:.2f}",
            d_fake_logit=f"{metrics['d_fake_logit']:.2f}",
            loss_metrics=" ".join(f"{name} {value:.3g}" for name, value in self.measured.items()),
            speed=f"{metrics['images_per_sec']:,.0f}",
        )

    def epoch_end(self, epoch: int, grid_path: Path | None) -> None:
        self.progress.console.print(epoch_done_line(epoch, grid_path))

    def last_grid(self, step: int, epochs: float, grid_path: Path | None) -> None:
        self.progress.console.print(last_grid_line(step, epochs, grid_path))

    def warn(self, message: str) -> None:
        self.progress.console.print(f"[yellow]warning:[/yellow] {message}")

    def finish(self, result: TrainResult) -> None:
        self.progress.stop()
        self.console.print(
            f"[green]done[/green]: {result.steps} steps in {result.seconds:.0f}s; "
            f"generator exported to [cyan]{result.export_path}[/cyan]"
        )

    def close(self) -> None:
        """Stop the live display, also when training ended with an error."""
        self.progress.stop()


def epoch_done_line(epoch: int, grid_path: Path | None) -> str:
    """``epoch 3 done, samples: runs/x/samples/epoch_002.png``; the end of an epoch without a grid says only that."""
    return f"epoch {epoch + 1} done" + (f", samples: {grid_path}" if grid_path is not None else "")


def last_grid_line(step: int, epochs: float, grid_path: Path | None) -> str:
    """``stopped at step 300 (epoch 0.32), samples: ...``: a ``--max-steps`` run ends mid-epoch, and says so."""
    return f"stopped at step {step} (epoch {epochs:.2f})" + (f", samples: {grid_path}" if grid_path else "")


def start_line(run_dir: Path, total_steps: int, steps_per_epoch: int, start_step: int) -> str:
    """What a run says first: where it trains, how far it goes, and, resumed, the step it continues from."""
    if start_step:
        return f"resuming {run_dir} from step {start_step}: {total_steps} steps, {steps_per_epoch} per epoch"
    return f"training into {run_dir}: {total_steps} steps, {steps_per_epoch} per epoch"


def planned_epochs(total_steps: int, steps_per_epoch: int, epochs: int) -> float:
    """The epochs the run will really train: ``epochs``, or fewer (a fraction) when ``--max-steps`` stops it first."""
    return min(float(epochs), total_steps / steps_per_epoch)


def shown_epochs(planned: float) -> str:
    """``5`` for whole epochs; ``0.32`` for a run that stops mid-epoch."""
    return str(int(planned)) if planned.is_integer() else f"{planned:.2f}"


def shown_epoch(done: float, planned: float) -> str:
    """The epoch under way, from 1 (``epoch 2/5``), or, in a run of a fractional length, the epochs done so far
    (``epoch 0.21/0.32``), so the bar never promises epochs the run will not train."""
    if planned.is_integer():
        return str(min(int(done) + 1, int(planned)))
    return f"{done:.2f}"


def clock(seconds: float) -> str:
    """``1:02:03`` for 3723 seconds."""
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"


class PlainReporter:
    """One plain line per log interval, flushed at once: for logs, pipes, CI and batch jobs, where no live bar shows.

    ``step=150/2340 epoch=0.32/5 d_loss=1.234 g_loss=0.987 d_real_logit=0.52 d_fake_logit=-0.81 d_real=0.62
    d_fake=0.31 img/s=1234 elapsed=0:01:23 eta=0:20:11`` goes to ``stream`` (stdout), warnings to ``errors``
    (stderr); the loss's own metrics (here the BCE losses' ``d_real`` and ``d_fake``) follow the logits. The ETA
    assumes the rest of the run goes at the average pace so far.
    """

    def __init__(self, stream: TextIO | None = None, errors: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self.errors = errors or sys.stderr
        self.total_steps = 1
        self.epochs = "1"

    def _print(self, line: str, *, error: bool = False) -> None:
        print(line, file=self.errors if error else self.stream, flush=True)

    def start(self, *, total_steps: int, steps_per_epoch: int, epochs: int, run_dir: Path, start_step: int = 0) -> None:
        self.total_steps = total_steps
        self.epochs = shown_epochs(planned_epochs(total_steps, steps_per_epoch, epochs))
        self._print(f"gankit {start_line(run_dir, total_steps, steps_per_epoch, start_step)}")

    def log(self, metrics: dict[str, Any]) -> None:
        step, elapsed = metrics["step"], metrics["elapsed_s"]
        eta = elapsed / max(step, 1) * (self.total_steps - step)
        scores = "".join(f" {key}={value:.4g}" for key, value in metrics.items() if key.startswith("eval/"))
        measured = "".join(f" {name}={metrics[name]:.3g}" for name in loss_metric_names(metrics))
        self._print(
            f"step={step}/{self.total_steps} epoch={metrics['epoch']:.2f}/{self.epochs} "
            f"d_loss={metrics['d_loss']:.3f} g_loss={metrics['g_loss']:.3f} "
            f"d_real_logit={metrics['d_real_logit']:.2f} d_fake_logit={metrics['d_fake_logit']:.2f}{measured} "
            f"img/s={metrics['images_per_sec']:.0f}{scores} elapsed={clock(elapsed)} eta={clock(eta)}"
        )

    def epoch_end(self, epoch: int, grid_path: Path | None) -> None:
        self._print(epoch_done_line(epoch, grid_path))

    def last_grid(self, step: int, epochs: float, grid_path: Path | None) -> None:
        self._print(last_grid_line(step, epochs, grid_path))

    def warn(self, message: str) -> None:
        self._print(f"warning: {message}", error=True)

    def finish(self, result: TrainResult) -> None:
        self._print(
            f"done: {result.steps} steps in {clock(result.seconds)}; generator exported to {result.export_path}"
        )

    def close(self) -> None:
        """Nothing to stop: every line is already out."""
