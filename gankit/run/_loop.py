"""The training loop: ``train(config)``, and the cadence of its logs, sample grids, evaluations and checkpoints.

``train(config)`` is the whole job behind ``gankit train``. The step never waits on the host: the losses, the mean
logits and the loss's own metrics are summed on the device (``gankit.run``) and read every ``log_every`` steps.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import random
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor

from gankit.errors import DivergenceError, TrainingInterrupted
from gankit.export import save_generator
from gankit.files import atomic_write_bytes, digest_tensors
from gankit.interfaces import ImageData
from gankit.pictures import plot_losses, save_image_grid, save_progress_gif
from gankit.registry import failures_reported
from gankit.run._assembly import Assembly, assemble, load_data
from gankit.run._card import record_run_card, run_export_card, write_run_card
from gankit.run._config import TrainConfig, recommendations_in_use
from gankit.run._distributed import Ranks, launched_ranks
from gankit.run._distributed import start as start_processes
from gankit.run._distributed import stop as stop_processes
from gankit.run._folder import RunFolder
from gankit.run._health import HealthMonitor, divergence, kept_checkpoint
from gankit.run._precision import Precision, resolve_device, resolve_precision
from gankit.run._reporting import Reporter, SilentReporter, TrainResult
from gankit.run._restore import announcer, restore
from gankit.run._stats import StatWindow
from gankit.run._stopping import StopRequest
from gankit.run._tracking import Trackers, build_trackers
from gankit.run._trainer import Trainer, peak_memory_mb, seed_everything
from gankit.version import __version__

log = logging.getLogger(__name__)


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
    if ranks.is_main and not resume:
        for line in recommendations_in_use(config):
            log.info("%s", line)
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
            trackers=Trackers(trackers if ranks.is_main else {}, announcer(reporter, ranks)),  # --quiet too
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
    if resume and ranks.is_main:
        _warn_if_the_data_changed(run, recorded[DATA_HASH], announcer(reporter, ranks))
    run.begin(step=trainer.step, config=recorded)
    if ranks.is_main and config.out is None and not resume:
        run.mark_latest()  # runs/latest: the run just started, for commands and docs that need no glob
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
        start_step=trainer.step if resume else 0,
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
            atomic_write_bytes(run.path / "ranks.json", (json.dumps({"weights_checksums": checksums}) + "\n").encode())
    ranks.barrier()
    result = TrainResult(run.path, run.export_path, trainer.step, epochs_completed, trainer.elapsed(), last_metrics)
    reporter.finish(result)
    return result


DATA_HASH = "data_hash"
"""The key of ``config.json`` recording the content hash of the training split a run started on."""


def data_hash(data: ImageData) -> str:
    """``blake2b:<hex>`` over the training images and labels as loaded (dtype, shape and bytes): the same whatever
    the dataset plugin, so a resume can tell that the data under a run changed (about 0.1 s for MNIST)."""
    digest = digest_tensors(hashlib.blake2b(digest_size=16), {"images": data.images, "labels": data.labels})
    return f"blake2b:{digest.hexdigest()}"


def _warn_if_the_data_changed(run: RunFolder, now: str, warn: Callable[[str], None]) -> None:
    """Say so when the training data is not what the run started on (a folder whose images were replaced): the
    resumed run then continues on other images, which no checkpoint can notice."""
    before = run.read_config().get(DATA_HASH)
    if isinstance(before, str) and before != now:
        warn(
            f"the training data is not what {run.path} started on (its content hash was {before[:20]}..., it is "
            f"{now[:20]}... now): the resumed run continues on other images"
        )


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
        "data": _data_record(assembly.data),
        DATA_HASH: data_hash(assembly.data),
        "gankit_version": __version__,
        "torch_version": torch.__version__,
    }


CHANNEL_MODES = {1: "grayscale", 3: "rgb", 4: "rgba"}


def _data_record(data: ImageData) -> dict[str, Any]:
    """What the run trained on, as loaded: the count, the classes and the shape (so the size and mode a dataset
    chose from the images themselves are on record), for config.json."""
    channels = int(data.images.shape[1])
    return {
        "images": int(data.images.shape[0]),
        "classes": data.num_classes,
        "class_names": list(data.class_names) if data.class_names else None,
        "image_shape": [int(side) for side in data.images.shape[1:]],
        "mode": CHANNEL_MODES.get(channels, f"{channels} channels"),
    }


def _training_loop(
    trainer: Trainer, run: RunFolder, reporter: Reporter, stop: StopRequest, trackers: Trackers
) -> dict[str, Any]:
    """Steps until ``total_steps``: logs every ``log_every``, checkpoints at epoch ends and grids every
    ``sample_every`` epochs (and at the end), stops cleanly."""
    config, ranks = trainer.config, trainer.ranks
    health = HealthMonitor()
    window = trainer.window
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
        if log_now:
            scores = _evaluate(trainer, run) if evaluate_now else {}
            last_metrics = _log(trainer, run, reporter, window, health, scores, trackers)
        # Asked after the evaluation, so a signal during one stops at this step. Ranks agree on stopping only at
        # log points, so a signal never leaves one rank a step ahead. Between log points the open window goes into
        # the checkpoint, so the resumed run's next line is the one an uninterrupted run writes.
        stopping = ranks.any(stop.requested, trainer.device) if (log_now or not ranks.enabled) else False
        if stopping:
            _save_checkpoint(trainer, run)
            raise TrainingInterrupted(
                f"interrupted by {stop.name} at step {trainer.step}; checkpoint saved. "
                f"Resume with: gankit train --resume {run.path}"
            )
        if epoch_done or finished:
            grid_path = None
            if (epoch + 1) % config.sample_every == 0 or finished:
                with untouched(trainer):
                    samples = trainer.fixed_samples()
                if ranks.is_main:
                    grid_path = run.samples_dir / f"epoch_{epoch:03d}.png"
                    save_image_grid(samples, grid_path)
                    trackers.log_image("samples", trainer.step, grid_path)
                for warning in health.check_samples(samples, step=trainer.step):
                    reporter.warn(warning)
            if epoch_done:
                reporter.epoch_end(epoch, grid_path)
            else:  # --max-steps ended the run mid-epoch: no epoch is done
                reporter.last_grid(trainer.step, trainer.step / trainer.steps_per_epoch, grid_path)
            _save_checkpoint(trainer, run)
        elif trainer.step % config.checkpoint_every == 0:
            _save_checkpoint(trainer, run)
    return last_metrics


def _save_checkpoint(trainer: Trainer, run: RunFolder) -> None:
    """Only finite states are saved, so the checkpoint on disk is always one worth resuming from."""
    if not trainer.weights_finite():
        raise DivergenceError(
            f"the weights stopped being finite by step {trainer.step}{kept_checkpoint(run)}. Lower the learning "
            "rates or try --amp off"
        )
    if trainer.ranks.is_main:
        run.save_checkpoint(trainer.state(), step=trainer.step, keep=trainer.config.keep_checkpoints)


@contextlib.contextmanager
def untouched(trainer: Trainer) -> Iterator[None]:
    """Leave what the next training step sees as it was: the random streams (torch's CPU and CUDA, Python's and
    numpy's) and every model's buffers (BatchNorm statistics, spectral norm vectors) and train/eval modes.

    Evaluation and sample grids run a plugin's code (the generator, the classifier being built), which may draw from
    the global streams or move buffers. A run evaluated at step 10 and one resumed from a checkpoint of step 10 must
    then take the same next step, so nothing of the evaluation may leak into it.
    """
    models: list[torch.nn.Module] = [trainer.generator, trainer.discriminator]
    models += [trainer.ema.generator] if trainer.ema else []
    modes = [[module.training for module in model.modules()] for model in models]
    buffers = [[buffer.detach().clone() for buffer in model.buffers()] for model in models]
    python_state, numpy_state = random.getstate(), np.random.get_state()
    cuda = [trainer.device.index or 0] if trainer.device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda, device_type="cuda"):
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)
            with torch.no_grad():
                for model, model_modes, saved in zip(models, modes, buffers, strict=True):
                    for module, training in zip(model.modules(), model_modes, strict=True):
                        module.training = training
                    for buffer, value in zip(model.buffers(), saved, strict=True):
                        buffer.copy_(value)


def _evaluate(trainer: Trainer, run: RunFolder) -> dict[str, float]:
    """Score the sampling generator on the main rank; export it as the best when its Frechet distance improves."""
    if not trainer.ranks.is_main:
        return {}
    from gankit.evaluation import evaluate_generator

    generator = trainer.sampling_generator
    with untouched(trainer):
        scores = evaluate_generator(
            generator,
            n=trainer.config.eval_samples,
            seed=trainer.config.seed,
            device=trainer.device,
            dataset=trainer.config.dataset,  # the run's own data: its held-out images, its classifier
            dataset_options=trainer.config.dataset_options,
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
    if trainer.augment is not None:  # read here, at a log point: the step never waits on it
        metrics["augment/p"] = float(trainer.augment.p)
    window.reset()
    if not all(math.isfinite(value) for value in stats.values()) or not trainer.weights_finite():
        first, who = window.first_non_finite, trainer.who
        raise DivergenceError(divergence(step=trainer.step, stats=stats, first=first, who=who, run=run))
    if streak >= config.max_skipped_steps:
        raise DivergenceError(
            f"fp16 gradient scaling skipped {streak} steps in a row by step {trainer.step}: the gradients overflow "
            f"every step{kept_checkpoint(run)}. Try --amp bf16 or --amp off"
        )
    if trainer.ranks.is_main:
        run.append_metrics(metrics)
        trackers.log_metrics(metrics)
    reporter.log(metrics)
    for warning in health.check(metrics):
        reporter.warn(warning)
    return metrics
