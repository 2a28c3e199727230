"""The training engine: alternating discriminator and generator steps, with AMP, logging and artifacts.

``train(config)`` is the whole job behind ``gankit train``. The step never waits on the host: losses and
discriminator outputs are summed on the device and read every ``log_every`` steps.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor

import gankit
from gankit import artifacts
from gankit.assembly import Assembly, assemble, load_data
from gankit.batches import DeviceBatches
from gankit.checkpoint import save_checkpoint
from gankit.config import TrainConfig
from gankit.errors import GankitError
from gankit.export import save_generator, save_image_grid
from gankit.interfaces import DiscriminatorInputs, GeneratorInputs
from gankit.precision import Precision, resolve_device, resolve_precision
from gankit.run_folder import RunFolder

STAT_NAMES = ("d_loss", "g_loss", "d_real", "d_fake")
"""What is summed on the device each step: both losses, mean D(x) and mean D(G(z)) as probabilities."""


class DivergenceError(GankitError):
    """The losses or weights stopped being finite."""


class Reporter(Protocol):
    """What the engine tells the outside world; the CLI shows it with rich, tests may record it."""

    def start(self, *, total_steps: int, steps_per_epoch: int, epochs: int, run_dir: Path) -> None: ...

    def log(self, metrics: dict[str, Any]) -> None: ...

    def epoch_end(self, epoch: int, grid_path: Path) -> None: ...

    def finish(self, result: TrainResult) -> None: ...


class SilentReporter:
    """Reports nothing: for library use and tests."""

    def start(self, *, total_steps: int, steps_per_epoch: int, epochs: int, run_dir: Path) -> None:
        pass

    def log(self, metrics: dict[str, Any]) -> None:
        pass

    def epoch_end(self, epoch: int, grid_path: Path) -> None:
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


def seed_everything(seed: int) -> None:
    """Seed the generators that weight initialisation and plugins may draw from."""
    random.seed(seed)
    torch.manual_seed(seed)


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory so far: CUDA allocator peak on GPU, the process's peak resident set on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Trainer:
    """One run: owns the models, optimizers, scalers, random streams and the step counter."""

    def __init__(self, config: TrainConfig, assembly: Assembly, device: torch.device, precision: Precision) -> None:
        self.config = config
        self.device = device
        self.precision = precision
        self.generator = assembly.generator.to(device)
        self.discriminator = assembly.discriminator.to(device)
        self.loss = assembly.loss
        self.conditional = self.generator.num_classes > 0
        self.batches = DeviceBatches(
            assembly.data,
            batch_size=config.batch_size,
            image_size=self.generator.image_shape[-1],
            device=device,
            seed=config.seed,
        )
        self.steps_per_epoch = self.batches.batches_per_epoch // config.d_steps
        if self.steps_per_epoch < 1:
            raise GankitError(
                f"the dataset has {len(self.batches.images)} images, fewer than one step needs "
                f"({config.batch_size} x {config.d_steps}); lower --batch-size"
            )
        self.optimizer_g = make_adam(self.generator, lr=config.lr_g, betas=config.betas, device=device)
        self.optimizer_d = make_adam(self.discriminator, lr=config.lr_d, betas=config.betas, device=device)
        self.scaler_g = precision.grad_scaler()
        self.scaler_d = precision.grad_scaler()
        self.noise = torch.Generator(device).manual_seed(config.seed)
        self.fixed_latent = self.generator.sample_latent(
            config.sample_count, generator=torch.Generator().manual_seed(config.seed)
        ).to(device)
        self.fixed_labels = (
            torch.arange(config.sample_count, device=device) % self.generator.num_classes if self.conditional else None
        )
        self.step = 0

    @property
    def total_steps(self) -> int:
        planned = self.steps_per_epoch * self.config.epochs
        return min(planned, self.config.max_steps) if self.config.max_steps else planned

    def batches_of_epoch(self, epoch: int) -> Iterator[tuple[Tensor, Tensor]]:
        order = self.batches.order(epoch)
        for index in range(self.steps_per_epoch * self.config.d_steps):
            yield self.batches.batch(order, index)

    def train_step(self, real_batches: list[tuple[Tensor, Tensor]]) -> Tensor:
        """``d_steps`` discriminator updates then one generator update; returns the step's stats on the device."""
        d_stats = torch.zeros(3, device=self.device)
        fake = labels = real = None
        for index, (real, labels) in enumerate(real_batches):
            last = index == len(real_batches) - 1
            with torch.set_grad_enabled(last), self.precision.autocast():
                latent = self.generator.sample_latent(len(real), generator=self.noise)
                fake = self.generator(latent, labels if self.conditional else None)
            d_stats = self._discriminator_step(real, fake.detach(), labels)
        assert fake is not None and real is not None
        g_loss = self._generator_step(real, fake, labels)
        return torch.cat([d_stats[:1], g_loss.detach().float().reshape(1), d_stats[1:]])

    def _discriminator_step(self, real: Tensor, fake: Tensor, labels: Tensor | None) -> Tensor:
        cond = labels if self.conditional else None
        if self.loss.requires_real_grad:
            real = real.detach().requires_grad_(True)
        with self.precision.autocast():
            real_logits = self.discriminator(real, cond)
            fake_logits = self.discriminator(fake, cond)
            loss = self.loss.discriminator_loss(
                DiscriminatorInputs(real, fake, real_logits, fake_logits, cond, self.discriminator, self.step)
            )
        self._update(loss, self.optimizer_d, self.scaler_d)
        with torch.no_grad():
            return torch.stack(
                [loss.detach().float(), real_logits.float().sigmoid().mean(), fake_logits.float().sigmoid().mean()]
            )

    def _generator_step(self, real: Tensor, fake: Tensor, labels: Tensor | None) -> Tensor:
        cond = labels if self.conditional else None
        self.discriminator.requires_grad_(False)  # D's weight gradients are not needed for G's update
        try:
            with self.precision.autocast():
                fake_logits = self.discriminator(fake, cond)
                loss = self.loss.generator_loss(
                    GeneratorInputs(real, fake, fake_logits, cond, self.discriminator, self.step)
                )
            self._update(loss, self.optimizer_g, self.scaler_g)
        finally:
            self.discriminator.requires_grad_(True)
        return loss

    @staticmethod
    def _update(loss: Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler) -> None:
        optimizer.zero_grad(set_to_none=True)
        scaled: Tensor = scaler.scale(loss)
        scaled.backward()  # type: ignore[no-untyped-call]
        scaler.step(optimizer)
        scaler.update()

    @torch.no_grad()
    def fixed_samples(self) -> Tensor:
        """Images from the run's fixed noise, in eval mode, so grids from different epochs are comparable."""
        self.generator.eval()
        try:
            with self.precision.autocast():
                images = self.generator(self.fixed_latent, self.fixed_labels)
        finally:
            self.generator.train()
        return images.float().cpu()  # type: ignore[no-any-return]

    def state(self) -> dict[str, Any]:
        """Everything needed to continue this run exactly, for the checkpoint."""
        return {
            "generator": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "optimizer_g": self.optimizer_g.state_dict(),
            "optimizer_d": self.optimizer_d.state_dict(),
            "scaler_g": self.scaler_g.state_dict(),
            "scaler_d": self.scaler_d.state_dict(),
            "noise_rng": self.noise.get_state(),
            "torch_rng": torch.get_rng_state(),
            "python_rng": random.getstate(),
            "step": self.step,
        }


def make_adam(
    model: torch.nn.Module, *, lr: float, betas: tuple[float, float], device: torch.device
) -> torch.optim.Adam:
    """Fused Adam on CUDA (one kernel for all parameters), the multi-tensor ``foreach`` path elsewhere."""
    if device.type == "cuda":
        return torch.optim.Adam(model.parameters(), lr=lr, betas=betas, fused=True)
    return torch.optim.Adam(model.parameters(), lr=lr, betas=betas, foreach=True)


def train(config: TrainConfig, *, reporter: Reporter | None = None, overwrite: bool = False) -> TrainResult:
    """Run the training ``config`` describes and write its run folder; returns where everything went."""
    reporter = reporter or SilentReporter()
    device = resolve_device(config.device)
    precision = resolve_precision(config.amp, device)
    run = RunFolder.create(config.out or RunFolder.default_path(config), overwrite=overwrite)
    seed_everything(config.seed)
    assembly = assemble(config, load_data(config))
    trainer = Trainer(config, assembly, device, precision)
    run.write_config(
        {
            **config.model_dump(mode="json"),
            **assembly.resolved_options(),
            "discriminator": config.discriminator_name,
            "resolved_device": str(device),
            "resolved_amp": precision.name,
            "gankit_version": gankit.__version__,
            "torch_version": torch.__version__,
        }
    )
    reporter.start(
        total_steps=trainer.total_steps,
        steps_per_epoch=trainer.steps_per_epoch,
        epochs=config.epochs,
        run_dir=run.path,
    )
    started = time.perf_counter()
    last_metrics: dict[str, Any] = {}
    epochs_completed = 0
    while epochs_completed < config.epochs and trainer.step < trainer.total_steps:
        epoch = epochs_completed
        last_metrics = _run_epoch(trainer, run, reporter, epoch, started) or last_metrics
        grid = run.samples_dir / f"epoch_{epoch:03d}.png"
        save_image_grid(trainer.fixed_samples(), grid)
        reporter.epoch_end(epoch, grid)
        epochs_completed += 1
        save_checkpoint(run.checkpoint_path, trainer.state(), metadata={"epoch": str(epochs_completed)})
    save_generator(trainer.generator, run.export_path, plugin_name=config.generator, overwrite=True)
    artifacts.save_progress_gif(sorted(run.samples_dir.glob("epoch_*.png")), run.gif_path)
    artifacts.plot_losses(run.read_metrics(), run.loss_plot_path)
    result = TrainResult(run.path, trainer.step, epochs_completed, time.perf_counter() - started, last_metrics)
    reporter.finish(result)
    return result


def _run_epoch(
    trainer: Trainer, run: RunFolder, reporter: Reporter, epoch: int, started: float
) -> dict[str, Any] | None:
    """Train one epoch (or until ``max_steps``); returns the last metrics line written, if any."""
    config = trainer.config
    sums = torch.zeros(len(STAT_NAMES), device=trainer.device)
    counted, last, window_start = 0, None, time.perf_counter()
    batches = trainer.batches_of_epoch(epoch)
    for index in range(trainer.steps_per_epoch):
        if trainer.step >= trainer.total_steps:
            break
        sums += trainer.train_step([next(batches) for _ in range(config.d_steps)])
        trainer.step += 1
        counted += 1
        if (
            trainer.step % config.log_every == 0
            or index == trainer.steps_per_epoch - 1
            or (trainer.step == trainer.total_steps)
        ):
            now = time.perf_counter()
            values = (sums / counted).tolist()  # the one host synchronisation per log interval
            metrics: dict[str, Any] = {
                "step": trainer.step,
                "epoch": epoch + (index + 1) / trainer.steps_per_epoch,
                **dict(zip(STAT_NAMES, values, strict=True)),
                "images_per_sec": counted * config.batch_size * config.d_steps / max(now - window_start, 1e-9),
                "elapsed_s": now - started,
                "peak_memory_mb": peak_memory_mb(trainer.device),
            }
            if not all(math.isfinite(value) for value in values):
                raise DivergenceError(
                    f"training diverged at step {trainer.step}: "
                    + ", ".join(f"{k}={v}" for k, v in zip(STAT_NAMES, values, strict=True))
                    + "; lower the learning rates or try --amp off"
                )
            run.append_metrics(metrics)
            reporter.log(metrics)
            last, counted, window_start = metrics, 0, now
            sums.zero_()
    return last
