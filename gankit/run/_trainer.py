"""The trainer: one run's models, optimizers and random streams, one training step, and its resumable state.

The step calls plugin code and knows, for every tensor, which plugin made it; what it can check on the host for free
(``requires_grad``, a tensor's version counter) it checks there, so autograd's errors ("does not require grad",
"modified by an inplace operation") become one line naming the generator, discriminator or loss that caused them.
"""

from __future__ import annotations

import math
import random
import time
from typing import Any, TypeVar

import torch
from torch import Tensor

from gankit.errors import ConfigError, GankitError, PluginError
from gankit.interfaces import DiscriminatorInputs, Generator, GeneratorInputs
from gankit.registry import check_training_batch, graph_owner
from gankit.run._assembly import Assembly
from gankit.run._augment import Augment, augmented
from gankit.run._batches import DeviceBatches
from gankit.run._config import TrainConfig
from gankit.run._distributed import Ranks, check_processes
from gankit.run._ema import GeneratorEMA
from gankit.run._loss_calls import LossCalls, logits_leaving_buffers
from gankit.run._precision import Precision
from gankit.run._stats import StatWindow, StepStats

M = TypeVar("M", bound=torch.nn.Module)

INPLACE_FIX = (
    " (an in-place operation, one ending in _, overwrote a tensor autograd saved for the backward pass: use the "
    "out-of-place one, e.g. x = x.mul(2) rather than x.mul_(2))"
)


def seed_everything(seed: int) -> None:
    """Seed the generators that weight initialisation and plugins may draw from."""
    random.seed(seed)
    torch.manual_seed(seed)


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory so far: CUDA allocator peak on GPU, the process's peak resident set on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


class Trainer:
    """One run: owns the models, optimizers, scalers, random streams and the step counter."""

    def __init__(
        self,
        config: TrainConfig,
        assembly: Assembly,
        device: torch.device,
        precision: Precision,
        ranks: Ranks | None = None,
    ) -> None:
        self.config = config
        self.device = device
        self.precision = precision
        self.ranks = ranks or Ranks()
        check_processes(config.batch_size, config.sync_batchnorm, processes=self.ranks.world_size, device=device)
        self.who = dict(assembly.who)
        """How messages name each part, by kind (``generator``, ``discriminator``, ``loss``, ``dataset``)."""
        self.memory_format = memory_format_for(config, assembly)
        self.generator = self._prepare(assembly.generator)
        self.discriminator = self._prepare(assembly.discriminator)
        # What the steps call: possibly DDP-wrapped and compiled, sharing parameters with the plain modules, which
        # are what state dicts come from. G's step runs the plain D: its weights are not updated there, so there is
        # nothing for DDP to synchronise (and DDP would wait for gradients that never come).
        self.run_generator = self._wrap(self.generator)
        self.run_discriminator = self._wrap(self.discriminator)
        self.plain_discriminator = torch.compile(self.discriminator) if config.compile else self.discriminator
        self.loss = assembly.loss
        self.loss_calls = LossCalls(self.loss, assembly.who["loss"], device)
        self.conditional = self.generator.num_classes > 0
        self.batches = self._checked_batches(assembly)
        self.steps_per_epoch = self.batches.batches_per_epoch // config.d_steps
        self.optimizer_g = make_adam(self.generator, lr=config.lr_g, betas=config.betas, device=device)
        self.optimizer_d = make_adam(self.discriminator, lr=config.lr_d, betas=config.betas, device=device)
        self.scaler_g = precision.grad_scaler()
        self.scaler_d = precision.grad_scaler()
        self.noise = torch.Generator(device).manual_seed(config.seed)
        # --augment: D sees real and fake images augmented alike, from the run's noise stream (gankit.run._augment).
        self.augment = (
            Augment(
                config.augment,
                noise=self.noise,
                batch_size=config.batch_size,
                mean_over_ranks=self.ranks.mean,
            )
            if config.augment
            else None
        )
        self.run_discriminator = augmented(self.run_discriminator, self.augment)
        self.plain_discriminator = augmented(self.plain_discriminator, self.augment)
        self.fixed_latent, self.fixed_labels = self._fixed_inputs()
        self.ema = (
            GeneratorEMA(self.generator, ema_kimg=config.ema_kimg, ema_rampup=config.ema_rampup) if config.ema else None
        )
        self.best_frechet = math.inf
        self.window = self.stat_window()
        """The statistics summed since the last log line; part of the state, so a resume between two log points
        writes the same next line as a run never interrupted."""
        self._no_skip = torch.zeros((), device=device)
        self.step = 0
        self._elapsed_before = 0.0
        self._started = time.perf_counter()

    def _checked_batches(self, assembly: Assembly) -> DeviceBatches:
        """The training split on the device, checked to hold one step and, with the first real batch, that G and D
        work at the training batch size and precision (a plugin's mistake is blamed on it here, not in the loop)."""
        config = self.config
        batches = DeviceBatches(
            assembly.data,
            batch_size=config.batch_size,
            image_size=self.generator.image_shape[-1],
            device=self.device,
            seed=config.seed,
            memory_format=self.memory_format,
            shard=self.ranks.shard,
        )
        if batches.batches_per_epoch // config.d_steps < 1:
            raise GankitError(
                f"{self.who.get('dataset', 'the dataset')} has {len(batches.images)} images, fewer than one "
                f"step needs ({config.batch_size} x {config.d_steps}); lower --batch-size"
            )
        real, labels = batches.batch(batches.order(0), 0)
        check_training_batch(
            self.generator,
            self.discriminator,
            real,
            labels if self.conditional else None,
            who=self.who,
            autocast=self.precision.autocast,
            amp_dtype=self.precision.dtype,
        )
        return batches

    def _fixed_inputs(self) -> tuple[Tensor, Tensor | None]:
        """The latents (and labels) of every sample grid: the same for the whole run, a function of the seed."""
        count, seed = self.config.sample_count, self.config.seed
        latent = self.generator.sample_latent(count, generator=torch.Generator().manual_seed(seed)).to(self.device)
        if not self.conditional:
            return latent, None
        return latent, torch.arange(count, device=self.device) % self.generator.num_classes

    def _prepare(self, model: M) -> M:
        model = model.to(self.device).to(memory_format=self.memory_format)
        if self.config.sync_batchnorm and self.ranks.enabled:  # on CUDA: check_processes refused it elsewhere
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)  # type: ignore[no-untyped-call]
        return model

    def _wrap(self, model: torch.nn.Module) -> Any:
        if self.ranks.enabled:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            model = DistributedDataParallel(model, device_ids=ids)
        return torch.compile(model) if self.config.compile else model

    @property
    def total_steps(self) -> int:
        planned = self.steps_per_epoch * self.config.epochs
        return min(planned, self.config.max_steps) if self.config.max_steps else planned

    def elapsed(self) -> float:
        """Training seconds so far, including those before a resume."""
        return self._elapsed_before + time.perf_counter() - self._started

    def stat_window(self) -> StatWindow:
        """A window for this run's step statistics: the engine's and the loss's ``metric_names``."""
        return StatWindow(self.device, self.loss_calls.metric_names)

    def train_step(self, real_batches: list[tuple[Tensor, Tensor]]) -> StepStats:
        """``d_steps`` discriminator updates then one generator update; returns the step's stats on the device."""
        self._set_learning_rates()
        skipped: Tensor | None = None
        d_stats = fake = labels = real = None
        watched: Tensor | None = None
        for index, (real, labels) in enumerate(real_batches):
            last = index == len(real_batches) - 1
            with torch.set_grad_enabled(last), self.precision.autocast():
                # Every rank draws the global batch's latents from the same stream and keeps its slice.
                global_batch = len(real) * self.ranks.world_size
                latent = self.ranks.shard(self.generator.sample_latent(global_batch, generator=self.noise))
                fake = self.run_generator(latent, labels if self.conditional else None)
            if last and not fake.requires_grad:
                raise self._cut_from_graph("generator", "images")
            d_stats, d_skipped = self._discriminator_step(real, fake.detach(), labels)
            skipped = _either(skipped, d_skipped)
            update = torch.stack([fake.detach().float().sum(), *self.loss_calls.discriminator_terms])
            # the first update with a non-finite value is the one watched (--d-steps > 1)
            watched = update if watched is None else torch.where(torch.isfinite(watched).all(), update, watched)
        assert d_stats is not None and fake is not None and real is not None and watched is not None
        g_loss, g_skipped, g_fake_logit = self._generator_step(real, fake, labels)
        skipped = _either(skipped, g_skipped)
        d_loss, d_real_logit, d_fake_logit = d_stats
        flag = skipped if skipped is not None else self._no_skip
        metrics, reported = self.loss_calls.take_metrics()
        values = torch.stack(
            [d_loss, g_loss.detach().float(), d_real_logit, d_fake_logit, *metrics, flag, *watched, g_fake_logit]
        )
        return StepStats(values, reported, step=self.step + 1)

    def _set_learning_rates(self) -> None:
        """This step's rates, a pure function of the step (so a resume needs no scheduler state)."""
        config = self.config
        if config.lr_schedule == "constant" and not config.lr_warmup:
            return
        factor = lr_factor(self.step, self.total_steps, config.lr_schedule, config.lr_warmup)
        for optimizer, base in ((self.optimizer_g, config.lr_g), (self.optimizer_d, config.lr_d)):
            for group in optimizer.param_groups:
                group["lr"] = base * factor

    def _discriminator_step(
        self, real: Tensor, fake: Tensor, labels: Tensor | None
    ) -> tuple[tuple[Tensor, Tensor, Tensor], Tensor | None]:
        cond = labels if self.conditional else None
        if self.loss_calls.needs_real_grad(self.step):
            real = real.detach().requires_grad_(True)
        with self.precision.autocast():
            before = (real._version, fake._version)
            real_logits = self.run_discriminator(real, cond)
            fake_logits = self.run_discriminator(fake, cond)
            if (real._version, fake._version) != before:
                raise PluginError(
                    f"{self.who['discriminator']} modified the images it was given in place (an operation ending "
                    "in _, such as mul_(), or an in-place activation on its input); autograd and gankit still need "
                    "them: compute on a new tensor"
                )
            if not (real_logits.requires_grad and fake_logits.requires_grad):
                raise self._cut_from_graph("discriminator", "logits")
            # Read before the loss: its statistics are the discriminator's, whatever the loss does with them.
            stats = (real_logits.detach().float().mean(), fake_logits.detach().float().mean())
            if self.augment is not None:  # ADA's heuristic reads D's verdict on the (augmented) reals
                self.augment.observe(real_logits)
            inputs = DiscriminatorInputs(
                **self._step_context(real, fake, cond), real_logits=real_logits, fake_logits=fake_logits
            )
            loss = self.loss_calls.discriminator(inputs)
        parts = [("discriminator", [real_logits, fake_logits]), ("loss", [loss])]
        skipped = self._update(loss, self.optimizer_d, self.scaler_d, parts)
        return (loss.detach().float(), *stats), skipped

    def _generator_step(
        self, real: Tensor, fake: Tensor, labels: Tensor | None
    ) -> tuple[Tensor, Tensor | None, Tensor]:
        cond = labels if self.conditional else None
        self.discriminator.requires_grad_(False)  # D's weight gradients are not needed for G's update
        try:
            with self.precision.autocast():
                fake_logits = self.plain_discriminator(fake, cond)
                if not fake_logits.requires_grad:
                    raise self._cut_from_graph("discriminator", "logits")
                # With D's update done, from the same D as the fake logits; D's buffers are left alone, so BatchNorm
                # statistics and spectral norm move once per forward the step needs, not once more for this one.
                real_logits = (
                    logits_leaving_buffers(self.discriminator, self.augment(real) if self.augment else real, cond)
                    if self.loss.generator_needs_real_logits
                    else None
                )
                fake_logit = fake_logits.detach().float().mean()
                inputs = GeneratorInputs(
                    **self._step_context(real, fake, cond), fake_logits=fake_logits, real_logits=real_logits
                )
                loss = self.loss_calls.generator(inputs)
            parts = [("generator", [fake]), ("discriminator", [fake_logits]), ("loss", [loss])]
            skipped = self._update(loss, self.optimizer_g, self.scaler_g, parts)
        finally:
            self.discriminator.requires_grad_(True)
        return loss, skipped, fake_logit

    def _cut_from_graph(self, kind: str, what: str) -> PluginError:
        """The error for a model whose output does not require grad although its inputs and weights do."""
        return PluginError(
            f"{self.who[kind]} returned {what} that do not require grad: forward cut them from its graph (with "
            ".detach(), .data, torch.no_grad(), .item() or a round trip through numpy), so no gradient can reach "
            "its weights; return the tensor its layers computed"
        )

    def _step_context(self, real: Tensor, fake: Tensor, labels: Tensor | None) -> dict[str, Any]:
        """What both objectives' inputs share."""
        return {
            "real_images": real,
            "fake_images": fake,
            "labels": labels,
            "discriminator": self.discriminator,
            "step": self.step,
        }

    def _update(
        self,
        loss: Tensor,
        optimizer: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler,
        parts: list[tuple[str, list[Tensor]]],
    ) -> Tensor | None:
        """One optimizer step; under fp16, also 1.0 (on the device) when scaling found inf/NaN and skipped it.

        ``parts`` are the plugins whose graph the backward runs through, with their outputs, in the order they ran
        (``(kind, tensors)``): an autograd error is blamed on the one whose node it names, else on all of them."""
        optimizer.zero_grad(set_to_none=True)
        scaled: Tensor = scaler.scale(loss) if scaler.is_enabled() else loss
        try:
            scaled.backward()  # type: ignore[no-untyped-call]
        except RuntimeError as exc:
            named = [(self.who[kind], outputs) for kind, outputs in parts]
            blamed = graph_owner(exc, named) or " or ".join(who for who, _ in named)
            problem = str(exc).partition(" Hint:")[0]  # autograd's hint (anomaly detection) is for the author
            fix = INPLACE_FIX if "inplace operation" in problem else ""
            raise PluginError(f"the backward pass through {blamed} failed: RuntimeError: {problem}{fix}") from exc
        if not scaler.is_enabled():
            optimizer.step()
            return None
        scale_before = scaler._scale.clone()  # type: ignore[union-attr]  # set by scale(); update() halves it on inf
        scaler.step(optimizer)
        scaler.update()
        return (scaler._scale < scale_before).float()  # type: ignore[operator]

    @property
    def sampling_generator(self) -> Generator:
        """What grids, scores and the export use: the EMA of the weights when kept, else the generator itself."""
        return self.ema.generator if self.ema is not None else self.generator

    def after_step(self) -> None:
        self.step += 1
        if self.ema is not None:
            self.ema.update(self.generator, step=self.step, batch_size=self.config.batch_size)

    def weights_checksum(self) -> float:
        """A float64 sum over every parameter and buffer: equal on all ranks when DDP keeps them in step."""
        tensors = [*self.generator.state_dict().values(), *self.discriminator.state_dict().values()]
        return float(sum(t.detach().double().sum() for t in tensors if t.is_floating_point()))

    def weights_finite(self) -> bool:
        """One host synchronisation for all parameters of both models."""
        params = [p.detach() for model in (self.generator, self.discriminator) for p in model.parameters()]
        return bool(torch.stack([torch.isfinite(p).all() for p in params]).all())

    @torch.no_grad()
    def fixed_samples(self) -> Tensor:
        """Images from the run's fixed noise, in eval mode, so grids from different epochs are comparable."""
        generator = self.sampling_generator
        was_training = generator.training
        generator.eval()
        try:
            with self.precision.autocast():
                images = generator(self.fixed_latent, self.fixed_labels)
        finally:
            generator.train(was_training)
        return images.float().cpu()  # type: ignore[no-any-return]

    def state(self) -> dict[str, Any]:
        """Everything needed to continue this run exactly, for the checkpoint."""
        state: dict[str, Any] = {
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
            "elapsed_s": self.elapsed(),
            "best_frechet": self.best_frechet,
            "stat_window": self.window.state(),
        }
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        if self.augment is not None:
            state["augment"] = self.augment.state_dict()
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore what ``state()`` saved; the next step is then the one the interrupted run would have taken."""
        self.generator.load_state_dict(state["generator"])
        self.discriminator.load_state_dict(state["discriminator"])
        self.optimizer_g.load_state_dict(state["optimizer_g"])
        self.optimizer_d.load_state_dict(state["optimizer_d"])
        match_parameter_strides(self.optimizer_g)
        match_parameter_strides(self.optimizer_d)
        if self.precision.scaled:
            self.scaler_g.load_state_dict(state["scaler_g"])
            self.scaler_d.load_state_dict(state["scaler_d"])
        self.noise.set_state(state["noise_rng"].cpu())
        torch.set_rng_state(state["torch_rng"].cpu())
        random.setstate(state["python_rng"])
        if self.device.type == "cuda" and "cuda_rng" in state:
            torch.cuda.set_rng_state(state["cuda_rng"].cpu(), self.device)
        if self.ema is not None:
            if "ema" not in state:
                raise ConfigError("this checkpoint has no EMA weights; resume without --ema")
            self.ema.load_state_dict(state["ema"])
        if self.augment is not None:
            self.augment.load_state_dict(state["augment"])
        self.best_frechet = float(state.get("best_frechet", math.inf))
        if "stat_window" in state:  # checkpoints before it was kept start an empty window
            self.window.load_state(state["stat_window"])
        self.step = int(state["step"])
        self._elapsed_before = float(state.get("elapsed_s", 0.0))
        self._started = time.perf_counter()


def lr_factor(step: int, total: int, schedule: str, warmup: int) -> float:
    """The learning-rate multiplier of step ``step`` (0-based) of ``total``: a linear warm-up over ``warmup`` steps,
    times a constant, linear or cosine decay that reaches 0 after the last step."""
    ramp = min(1.0, (step + 1) / warmup) if warmup else 1.0
    progress = min(1.0, step / max(total, 1))
    if schedule == "linear":
        return ramp * (1.0 - progress)
    if schedule == "cosine":
        return ramp * 0.5 * (1.0 + math.cos(math.pi * progress))
    return ramp


def match_parameter_strides(optimizer: torch.optim.Optimizer) -> None:
    """Give restored optimizer state its parameter's memory format, as a fresh run's ``zeros_like`` does.

    A checkpoint stores tensors contiguous; the parameters of a channels-last model are not. Fused Adam on CUDA
    refuses the mix ("params, grads, exp_avgs, and exp_avg_sqs must have same dtype, device, and layout"): the
    first resumed step failed, found by scripts/gpu_check.py on an H200.
    """
    for group in optimizer.param_groups:
        for parameter in group["params"]:
            state = optimizer.state.get(parameter, {})
            for key, value in state.items():
                if (
                    isinstance(value, Tensor)
                    and value.shape == parameter.shape
                    and value.stride() != parameter.stride()
                ):
                    state[key] = torch.empty_like(parameter, dtype=value.dtype).copy_(value)


def _either(first: Tensor | None, second: Tensor | None) -> Tensor | None:
    """Logical or of two optional 0/1 flags on the device."""
    if first is None or second is None:
        return second if first is None else first
    return torch.maximum(first, second)


def memory_format_for(config: TrainConfig, assembly: Assembly) -> torch.memory_format:
    """Channels-last when asked, or (``auto``) when both models say convolutions dominate them.

    ``auto`` stays contiguous under ``--compile``: torch 2.11's inductor asserts on the stride of a channels-last
    transposed convolution's weight gradient (DCGAN's first layer), found by scripts/gpu_check.py on an H200.
    """
    prefer = assembly.generator.prefers_channels_last and assembly.discriminator.prefers_channels_last
    prefer = prefer and not config.compile
    wanted = config.channels_last == "on" or (config.channels_last == "auto" and prefer)
    return torch.channels_last if wanted else torch.contiguous_format


def make_adam(
    model: torch.nn.Module, *, lr: float, betas: tuple[float, float], device: torch.device
) -> torch.optim.Adam:
    """Fused Adam on CUDA (one kernel for all parameters), the multi-tensor ``foreach`` path elsewhere."""
    if device.type == "cuda":
        return torch.optim.Adam(model.parameters(), lr=lr, betas=betas, fused=True)
    return torch.optim.Adam(model.parameters(), lr=lr, betas=betas, foreach=True)
