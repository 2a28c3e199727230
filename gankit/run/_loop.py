"""The training loop: ``train(config)``, and the cadence of its logs, sample grids, evaluations and checkpoints.

``train(config)`` is the whole job behind ``gankit train``. The step never waits on the host: the losses, the mean
logits and the loss's own metrics are summed on the device (``gankit.run``) and read every ``log_every`` steps.
"""

from __future__ import annotations

import json
import math
from typing import Any

import torch
from torch import Tensor

from gankit.errors import DivergenceError, TrainingInterrupted
from gankit.export import save_generator
from gankit.pictures import plot_losses, save_image_grid, save_progress_gif
from gankit.registry import failures_reported
from gankit.run._assembly import Assembly, assemble, load_data
from gankit.run._card import record_run_card, run_export_card, write_run_card
from gankit.run._config import TrainConfig
from gankit.run._distributed import Ranks, launched_ranks
from gankit.run._distributed import start as start_processes
from gankit.run._distributed import stop as stop_processes
from gankit.run._folder import RunFolder
from gankit.run._health import HealthMonitor
from gankit.run._precision import Precision, resolve_device, resolve_precision
from gankit.run._reporting import Reporter, SilentReporter, TrainResult
from gankit.run._restore import restore
from gankit.run._stats import StatWindow
from gankit.run._stopping import StopRequest
from gankit.run._tracking import Trackers, build_trackers
from gankit.run._trainer import Trainer, peak_memory_mb, seed_everything
from gankit.version import __version__


def train(
    config: TrainConfig, *, reporter: Reporter | None = None, overwrite: bool = False, resume: bool = False
) -> TrainResult:
    """Run the training ``config`` describes and write its run folder; returns where everything went.

    With ``resume`` the run continues from the latest checkpoint in ``config.out`` and, on CPU, ends bit-identical
    to a run that was never interrupted. SIGINT/SIGTERM end the current step, save a checkpoint and raise
    ``TrainingInterrupted``; non-finite losses or weights raise ``DivergenceError`` with the last good checkpoint
    kept. Launched by torchrun, each process trains its slice of every global batch and only rank 0 writes files.
    """
    ranks = launched_ranks()
    device = start_processes(ranks, resolve_device(config.device))
    try:
        return _train(config, ranks, device, reporter if ranks.is_main else None, overwrite=overwrite, resume=resume)
    finally:
        stop_processes(ranks)


def _train(
    config: TrainConfig,
    ranks: Ranks,
    device: torch.device,
    reporter: Reporter | None,
    *,
    overwrite: bool,
    resume: bool,
) -> TrainResult:
    reporter = reporter or SilentReporter()
    precision = resolve_precision(config.amp, device)
    out = config.out or RunFolder.default_path(config)
    # Checked before the slow part; nothing is written until the trainer exists, so bad input creates nothing.
    run = RunFolder.prepare(out, resume=resume, overwrite=overwrite, is_main=ranks.is_main)
    trackers = build_trackers(config)  # on every rank, so a bad tracker stops them all; only the main one logs
    seed_everything(config.seed)
    assembly = assemble(config, load_data(config))
    assembly.check_outputs()
    with run, failures_reported(assembly.plugins(), log=run.error_log_path if ranks.is_main else None):
        return _run(
            config,
            assembly,
            run,
            ranks,
            device,
            precision,
            reporter,
            resume=resume,
            trackers=Trackers(trackers if ranks.is_main else {}, reporter.warn),
        )


def _run(
    config: TrainConfig,
    assembly: Assembly,
    run: RunFolder,
    ranks: Ranks,
    device: torch.device,
    precision: Precision,
    reporter: Reporter,
    *,
    resume: bool,
    trackers: Trackers,
) -> TrainResult:
    """From the checked assembly to the end of the run: the trainer, the loop and what is written at the end."""
    trainer = Trainer(config, assembly, device, precision, ranks)
    if resume:
        restore(trainer, run, reporter)
    recorded = _recorded_config(config, assembly, device, precision, ranks)
    run.begin(step=trainer.step, config=recorded)
    if ranks.is_main:
        record_run_card(
            run,
            config=config,
            data=assembly.data,
            generator=trainer.sampling_generator,
            step=trainer.step,
            steps_per_epoch=trainer.steps_per_epoch,
        )
    reporter.start(
        total_steps=trainer.total_steps,
        steps_per_epoch=trainer.steps_per_epoch,
        epochs=config.epochs,
        run_dir=run.path,
    )
    with StopRequest() as stop, trackers.running(run.path, recorded, resumed_at_step=trainer.step if resume else 0):
        last_metrics = _training_loop(trainer, run, reporter, stop, trackers)
    epochs_completed = -(-trainer.step // trainer.steps_per_epoch)
    checksums = ranks.gather_floats(trainer.weights_checksum(), device)
    if ranks.is_main:
        generator = trainer.sampling_generator
        card = run_export_card(run, generator, step=trainer.step, ema_weights=trainer.ema is not None)
        save_generator(generator, run.export_path, plugin_name=config.generator, card=card, overwrite=True)
        write_run_card(run, card)
        save_progress_gif(sorted(run.samples_dir.glob("epoch_*.png")), run.gif_path)
        plot_losses(run.read_metrics(), run.loss_plot_path)
        if ranks.enabled:  # evidence that DDP kept every rank's weights identical
            (run.path / "ranks.json").write_text(json.dumps({"weights_checksums": checksums}) + "\n")
    ranks.barrier()
    result = TrainResult(run.path, trainer.step, epochs_completed, trainer.elapsed(), last_metrics)
    reporter.finish(result)
    return result


def _recorded_config(
    config: TrainConfig, assembly: Assembly, device: torch.device, precision: Precision, ranks: Ranks
) -> dict[str, Any]:
    """What ``config.json`` records: the config, every plugin's final options, and what was resolved at start."""
    return {
        **config.model_dump(mode="json"),
        **assembly.resolved_options(),
        "discriminator": config.discriminator_name,
        "resolved_device": str(device),
        "resolved_amp": precision.name,
        "world_size": ranks.world_size,
        "gankit_version": __version__,
        "torch_version": torch.__version__,
    }


def _training_loop(
    trainer: Trainer, run: RunFolder, reporter: Reporter, stop: StopRequest, trackers: Trackers
) -> dict[str, Any]:
    """Steps until ``total_steps``: logs every ``log_every``, checkpoints at epoch ends and grids every
    ``sample_every`` epochs (and at the end), stops cleanly."""
    config, ranks = trainer.config, trainer.ranks
    health = HealthMonitor()
    window = trainer.stat_window()
    last_metrics: dict[str, Any] = {}
    order: Tensor | None = None
    while trainer.step < trainer.total_steps:
        epoch, index = divmod(trainer.step, trainer.steps_per_epoch)
        if order is None or index == 0:
            order = trainer.batches.order(epoch)
        first = index * config.d_steps
        window.add(trainer.train_step([trainer.batches.batch(order, first + j) for j in range(config.d_steps)]))
        trainer.after_step()
        epoch_done = trainer.step % trainer.steps_per_epoch == 0
        finished = trainer.step == trainer.total_steps
        evaluate_now = config.eval_every is not None and (trainer.step % config.eval_every == 0 or finished)
        log_now = trainer.step % config.log_every == 0 or epoch_done or finished or evaluate_now
        # Ranks agree on stopping only at log points, so a signal never leaves one rank a step ahead.
        stopping = ranks.any(stop.requested, trainer.device) if (log_now or not ranks.enabled) else False
        if log_now or stopping:
            scores = _evaluate(trainer, run) if evaluate_now else {}
            last_metrics = _log(trainer, run, reporter, window, health, scores, trackers)
        if stopping:
            _save_checkpoint(trainer, run)
            raise TrainingInterrupted(
                f"interrupted by {stop.name} at step {trainer.step}; checkpoint saved. "
                f"Resume with: gankit train --resume {run.path}"
            )
        if epoch_done or finished:
            grid_path = None
            if (epoch + 1) % config.sample_every == 0 or finished:
                samples = trainer.fixed_samples()
                if ranks.is_main:
                    grid_path = run.samples_dir / f"epoch_{epoch:03d}.png"
                    save_image_grid(samples, grid_path)
                    trackers.log_image("samples", trainer.step, grid_path)
                for warning in health.check_samples(samples):
                    reporter.warn(warning)
            reporter.epoch_end(epoch, grid_path)
            _save_checkpoint(trainer, run)
        elif trainer.step % config.checkpoint_every == 0:
            _save_checkpoint(trainer, run)
    return last_metrics


def _save_checkpoint(trainer: Trainer, run: RunFolder) -> None:
    """Only finite states are saved, so the checkpoint on disk is always one worth resuming from."""
    if not trainer.weights_finite():
        raise DivergenceError(
            f"the weights stopped being finite by step {trainer.step}; the last good checkpoint is kept in "
            f"{run.path}. Lower the learning rates or try --amp off"
        )
    if trainer.ranks.is_main:
        run.save_checkpoint(trainer.state(), step=trainer.step, keep=trainer.config.keep_checkpoints)


def _evaluate(trainer: Trainer, run: RunFolder) -> dict[str, float]:
    """Score the sampling generator on the main rank; export it as the best when its Frechet distance improves."""
    if not trainer.ranks.is_main:
        return {}
    from gankit.evaluation import evaluate_generator

    generator = trainer.sampling_generator
    scores = evaluate_generator(
        generator, n=trainer.config.eval_samples, seed=trainer.config.seed, device=trainer.device
    )
    if scores["frechet_distance"] < trainer.best_frechet:
        trainer.best_frechet = scores["frechet_distance"]
        card = run_export_card(
            run, generator, step=trainer.step, ema_weights=trainer.ema is not None, latest_scores=scores
        )
        save_generator(generator, run.best_export_path, plugin_name=trainer.config.generator, card=card, overwrite=True)
    return {f"eval/{name}": value for name, value in scores.items()}


def _log(
    trainer: Trainer,
    run: RunFolder,
    reporter: Reporter,
    window: StatWindow,
    health: HealthMonitor,
    scores: dict[str, float],
    trackers: Trackers,
) -> dict[str, Any]:
    """Read the window's sums (the one host synchronisation per interval), write a metrics line (to
    ``metrics.jsonl`` and the trackers), check health."""
    config = trainer.config
    stats, skipped, streak, seconds = window.read(trainer.ranks)
    metrics: dict[str, Any] = {
        "step": trainer.step,
        "epoch": trainer.step / trainer.steps_per_epoch,
        **stats,
        "images_per_sec": window.steps * config.batch_size * config.d_steps / max(seconds, 1e-9),
        "elapsed_s": trainer.elapsed(),
        "peak_memory_mb": peak_memory_mb(trainer.device),
        **scores,
    }
    if trainer.precision.scaled:
        metrics["fp16_skipped_steps"] = skipped
    window.reset()
    if not all(math.isfinite(value) for value in stats.values()) or not trainer.weights_finite():
        shown = ", ".join(f"{name}={value:.4g}" for name, value in stats.items())
        raise DivergenceError(
            f"training diverged by step {trainer.step} ({shown}); the last good checkpoint is kept in {run.path}. "
            "Lower the learning rates or try --amp off"
        )
    if streak >= config.max_skipped_steps:
        raise DivergenceError(
            f"fp16 gradient scaling skipped {streak} steps in a row by step {trainer.step}: the gradients overflow "
            f"every step; the last good checkpoint is kept in {run.path}. Try --amp bf16 or --amp off"
        )
    if trainer.ranks.is_main:
        run.append_metrics(metrics)
        trackers.log_metrics(metrics)
    reporter.log(metrics)
    for warning in health.check(metrics):
        reporter.warn(warning)
    return metrics
