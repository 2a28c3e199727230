"""What training tells the outside world: the reporter protocol, the silent and rich reporters, and the result."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


class Reporter(Protocol):
    """What the engine tells the outside world; the CLI shows it with rich, tests may record it."""

    def start(self, *, total_steps: int, steps_per_epoch: int, epochs: int, run_dir: Path) -> None: ...

    def log(self, metrics: dict[str, Any]) -> None: ...

    def epoch_end(self, epoch: int, grid_path: Path) -> None: ...

    def warn(self, message: str) -> None: ...

    def finish(self, result: TrainResult) -> None: ...


class SilentReporter:
    """Reports nothing: for library use and tests."""

    def start(self, *, total_steps: int, steps_per_epoch: int, epochs: int, run_dir: Path) -> None:
        pass

    def log(self, metrics: dict[str, Any]) -> None:
        pass

    def epoch_end(self, epoch: int, grid_path: Path) -> None:
        pass

    def warn(self, message: str) -> None:
        pass

    def finish(self, result: TrainResult) -> None:
        pass


@dataclass
class TrainResult:
    """Where a finished run left its files, and how it went."""

    run_dir: Path
    steps: int
    epochs_completed: int
    seconds: float
    final_metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def export_path(self) -> Path:
        return self.run_dir / "generator.safetensors"


class RichReporter:
    """Shows one live bar over all steps; prints a line per epoch with the sample grid's path."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.progress = Progress(
            TextColumn("[bold]epoch {task.fields[epoch]}/{task.fields[epochs]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("D {task.fields[d_loss]} G {task.fields[g_loss]}"),
            TextColumn("D(x) {task.fields[d_real]} D(G(z)) {task.fields[d_fake]}"),
            TextColumn("{task.fields[speed]} img/s"),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self.task: Any = None
        self.steps_per_epoch = 1

    def start(self, *, total_steps: int, steps_per_epoch: int, epochs: int, run_dir: Path) -> None:
        self.steps_per_epoch = steps_per_epoch
        self.console.print(f"[bold]gankit[/bold] training into [cyan]{run_dir}[/cyan]")
        self.progress.start()
        self.task = self.progress.add_task(
            "train",
            total=total_steps,
            epoch=1,
            epochs=epochs,
            d_loss="-",
            g_loss="-",
            d_real="-",
            d_fake="-",
            speed="-",
        )

    def log(self, metrics: dict[str, Any]) -> None:
        self.progress.update(
            self.task,
            completed=metrics["step"],
            epoch=min(int(metrics["epoch"]) + 1, self.progress.tasks[0].fields["epochs"]),
            d_loss=f"{metrics['d_loss']:.3f}",
            g_loss=f"{metrics['g_loss']:.3f}",
            d_real=f"{metrics['d_real']:.2f}",
            d_fake=f"{metrics['d_fake']:.2f}",
            speed=f"{metrics['images_per_sec']:,.0f}",
        )

    def epoch_end(self, epoch: int, grid_path: Path) -> None:
        self.progress.console.print(f"epoch {epoch + 1} done, samples: {grid_path}")

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
