"""What the benchmarks measure, shared by the pytest-benchmark suite (``test_bench_*.py``) and ``compare.py``.

Every workload exposes one timed unit that returns the number of images it processed, so both harnesses report
images per second of exactly the same code:

- data pipelines: ``GankitData`` (``DeviceBatches`` over an epoch order) and ``SeedsData`` (torchvision's MNIST
  with PIL ``Resize``/``ToTensor``/``Normalize`` and a ``DataLoader``); one unit is one epoch;
- training loops: ``GankitLoop`` (the engine's ``Trainer.train_step`` as ``gankit train`` drives it), ``RawLoop``
  (the same math written by hand: the framework's overhead is the gap) and ``SeedsLoop`` (the classic
  pytorch/examples loop: Sigmoid + BCELoss, ``.item()`` every step, data from the DataLoader); one unit is N steps;
- ``Sampling``: ``gankit.load_generator`` and ``gankit.pictures.sample_images`` on an export.

All three training loops build their models through ``gankit.run.assemble`` with the same seed, so they start
from identical weights.
"""

from __future__ import annotations

import os
import platform
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from gankit.export import load_generator, save_generator
from gankit.files import read_idx
from gankit.interfaces import DiscriminatorInputs, Generator, GeneratorInputs, ImageData, Loss, LossOptions
from gankit.pictures import sample_images
from gankit.registry import create_plugin, registry
from gankit.run import (
    DeviceBatches,
    TrainConfig,
    Trainer,
    assemble,
    build_config,
    make_adam,
    memory_format_for,
    resized_uint8,
    resolve_device,
    resolve_precision,
    seed_everything,
)

SIZES = (28, 64)
MODELS = ("mlp", "dcgan")
STEPS = {("dcgan", 28): 15, ("mlp", 28): 40, ("dcgan", 64): 3, ("mlp", 64): 20}
"""Training steps per timed round: a few seconds each on a 2-core CPU."""
LR = 2e-4
BETAS = (0.5, 0.999)


@dataclass(frozen=True)
class Scale:
    """Sizes of a benchmark run: ``FULL`` is what the figures use, ``QUICK`` a smoke run of the same code."""

    batch_size: int = 128
    dcgan_width: int = 64
    """ngf = ndf (the classic DCGAN's 64)."""
    mlp_hidden: int = 256
    """The seeds' MLP GAN: 100-256-512-1024-784."""
    data_batches: int | None = None
    """Batches per data-pipeline unit; None is a whole epoch."""
    sample_count: int = 1024


FULL = Scale()
QUICK = Scale(batch_size=16, dcgan_width=8, mlp_hidden=32, data_batches=4, sample_count=64)


# -- the machine -----------------------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """What a figure depends on: CPU model, cores, torch version and threads, the load when measuring started."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    import torchvision

    info: dict[str, Any] = {
        "cpu": cpu,
        "logical_cores": os.cpu_count(),
        "usable_cores": usable,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "python": platform.python_version(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }
    return info


def sync(device: torch.device) -> None:
    """Wait for the device, so a timer stopped after this has seen all the work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# -- MNIST on disk, for torchvision ----------------------------------------------------------------------------------

IDX_NAMES = {
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
"""torchvision's file names, keyed by ``train``; it checks that all four exist before reading either split."""


def load_mnist(split: str = "train") -> ImageData:
    """MNIST from gankit's cache (uint8, ``(N, 1, 28, 28)``), fetched once on first use."""
    dataset = create_plugin("dataset", "mnist")
    return dataset.load(split)  # type: ignore[no-any-return]


def write_idx(path: Path, tensor: Tensor) -> None:
    """An uncompressed IDX file of unsigned bytes: magic ``0x0000080N`` then N big-endian int32 sizes, then data."""
    data = tensor.detach().to(device="cpu", dtype=torch.uint8).contiguous()
    header = struct.pack(">I", 0x0800 | data.dim()) + struct.pack(f">{data.dim()}I", *data.shape)
    path.write_bytes(header + data.numpy().tobytes())


def write_torchvision_mnist(root: Path) -> Path:
    """Write gankit's MNIST as the IDX files torchvision's ``datasets.MNIST(root)`` reads, and check them.

    Each file is read back with ``gankit.files.read_idx`` and must equal the tensors it was written from.
    """
    raw = Path(root) / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for train, (images_name, labels_name) in IDX_NAMES.items():
        data = load_mnist("train" if train else "test")
        images, labels = data.images.squeeze(1), data.labels
        write_idx(raw / images_name, images)
        write_idx(raw / labels_name, labels)
        if not torch.equal(read_idx(raw / images_name, ndim=3), images):
            raise RuntimeError(f"{raw / images_name} does not read back as the images it was written from")
        if not torch.equal(read_idx(raw / labels_name, ndim=1).to(labels.dtype), labels):
            raise RuntimeError(f"{raw / labels_name} does not read back as the labels it was written from")
    return Path(root)


def seeds_dataset(root: Path, *, image_size: int) -> Any:
    """The seeds' dataset: torchvision MNIST, each image a PIL picture resized, made a tensor and normalised."""
    from torchvision import datasets, transforms

    transform = transforms.Compose(
        [transforms.Resize(image_size), transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))]
    )
    return datasets.MNIST(str(root), train=True, download=False, transform=transform)


def seeds_loader(root: Path, *, image_size: int, batch_size: int, workers: int) -> torch.utils.data.DataLoader[Any]:
    """The seeds' ``DataLoader(batch_size, shuffle=True, num_workers)`` over ``seeds_dataset``."""
    dataset = seeds_dataset(root, image_size=image_size)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers)


# -- data pipelines --------------------------------------------------------------------------------------------------


class GankitData:
    """gankit's pipeline as the engine drives it: one ``DeviceBatches.batch`` per batch of each epoch's order."""

    def __init__(
        self, data: ImageData, *, image_size: int, batch_size: int, device: torch.device, limit: int | None = None
    ) -> None:
        self.batches = DeviceBatches(data, batch_size=batch_size, image_size=image_size, device=device, seed=0)
        self.device = device
        self.limit = limit
        self.epoch = 0

    def run(self) -> int:
        """One epoch (or ``limit`` batches of it); returns the images served."""
        order = self.batches.order(self.epoch)
        self.epoch += 1
        count = (
            self.batches.batches_per_epoch if self.limit is None else min(self.limit, self.batches.batches_per_epoch)
        )
        served = 0
        for index in range(count):
            images, _ = self.batches.batch(order, index)
            served += len(images)
        sync(self.device)
        return served


class SeedsData:
    """The seeds' pipeline: one pass over the ``DataLoader`` (workers, if any, start with each pass as in an epoch)."""

    def __init__(self, loader: torch.utils.data.DataLoader[Any], *, limit: int | None = None) -> None:
        self.loader = loader
        self.limit = limit

    def run(self) -> int:
        """One epoch (or ``limit`` batches of it); returns the images served."""
        served = 0
        for index, (images, _) in enumerate(self.loader):
            served += len(images)
            if self.limit is not None and index + 1 >= self.limit:
                break
        return served


def endless(loader: torch.utils.data.DataLoader[Any]) -> Iterator[Any]:
    """The loader's batches epoch after epoch, as a training loop sees them."""
    while True:
        yield from loader


# -- training loops --------------------------------------------------------------------------------------------------


def train_config(
    model: str, image_size: int, scale: Scale, *, channels_last: str = "auto", device: str = "cpu", **overrides: Any
) -> TrainConfig:
    """The configuration of ``gankit train --gen MODEL --image-size SIZE`` at ``scale``, otherwise the defaults."""
    options = {"width": scale.dcgan_width} if model == "dcgan" else {"hidden": scale.mlp_hidden}
    return build_config(
        {
            "generator": model,
            "loss": "nonsat",
            "dataset": "mnist",
            "generator_options": options,
            "discriminator_options": options,
            "batch_size": scale.batch_size,
            "image_size": image_size,
            "device": device,
            "channels_last": channels_last,
            "lr_g": LR,
            "lr_d": LR,
            "betas": BETAS,
            **overrides,
        }
    )


class GankitLoop:
    """The default ``gankit train`` step: ``Trainer.train_step`` on ``DeviceBatches`` with a ``StatWindow``.

    Between log lines it does what ``gankit.run._loop._training_loop`` does; at every ``log_every`` it does the
    device work of ``_log`` (read the window, check the weights are finite). Epoch-end grids and checkpoints are
    left out (once per epoch, they are the same whatever the step costs).
    """

    def __init__(self, config: TrainConfig, data: ImageData) -> None:
        seed_everything(config.seed)
        device = resolve_device(config.device)
        self.trainer = Trainer(config, assemble(config, data), device, resolve_precision(config.amp, device))
        self.window = self.trainer.stat_window()
        self.order: Tensor | None = None
        self.device = device

    @property
    def memory_format(self) -> torch.memory_format:
        return self.trainer.memory_format

    def run(self, steps: int) -> int:
        trainer, config = self.trainer, self.trainer.config
        for _ in range(steps):
            epoch, index = divmod(trainer.step, trainer.steps_per_epoch)
            if self.order is None or index == 0:
                self.order = trainer.batches.order(epoch)
            first = index * config.d_steps
            real = [trainer.batches.batch(self.order, first + j) for j in range(config.d_steps)]
            self.window.add(trainer.train_step(real))
            trainer.after_step()
            if trainer.step % config.log_every == 0:
                self.window.read(trainer.ranks)
                self.window.reset()
                trainer.weights_finite()
        sync(self.device)
        return steps * config.batch_size * config.d_steps


class LazyR1Options(LossOptions):
    """Options of the benchmark's R1 loss."""

    interval: int = Field(16, ge=1, le=1000, description="Steps between two R1 penalties (StyleGAN2: 16).")
    gamma: float = Field(10.0, ge=0.0, le=1e6, description="Weight of the R1 penalty, applied as gamma / 2.")


class LazyR1(Loss):
    """The non-saturating loss with R1 every ``interval`` steps (StyleGAN2's lazy regularisation), as a plugin.

    The penalty differentiates the engine's real logits, which carry the graph from the real images on exactly the
    regularising updates (the fp32 and bf16 recipe of docs/plugins.md).
    """

    Options = LazyR1Options
    options: LazyR1Options
    metric_names = ("r1_penalty",)

    @property
    def regularization_interval(self) -> int:
        return self.options.interval

    def discriminator_loss(self, inputs: DiscriminatorInputs) -> Tensor:
        real, fake = inputs.real_logits.float(), inputs.fake_logits.float()
        return F.softplus(-real).mean() + F.softplus(fake).mean()

    def discriminator_regularizer(self, inputs: DiscriminatorInputs) -> Tensor:
        (grad,) = torch.autograd.grad(inputs.real_logits.float().sum(), inputs.real_images, create_graph=True)
        penalty = grad.float().flatten(1).pow(2).sum(dim=1).mean()
        inputs.report("r1_penalty", penalty)
        return self.options.gamma / 2 * penalty

    def generator_loss(self, inputs: GeneratorInputs) -> Tensor:
        return F.softplus(-inputs.fake_logits.float()).mean()


R1_LOSS = "bench-lazy-r1"
"""The name ``LazyR1`` is registered under, in this process, by ``register_lazy_r1``."""


def register_lazy_r1() -> str:
    """Make ``LazyR1`` available as ``--loss bench-lazy-r1`` in this process; returns the name."""
    if R1_LOSS not in registry.names("loss"):
        registry.register("loss", R1_LOSS, LazyR1)
    return R1_LOSS


class RawLoop:
    """gankit's math written as a plain loop: what the engine's step would cost with no framework at all.

    Same models and initial weights, same batches (uint8 on the device, resized once, gathered, scaled), same
    losses from logits with softplus, Adam foreach (fused on CUDA), ``zero_grad(set_to_none=True)``, D frozen for
    G's update, the same memory format, statistics summed on the device and read every ``log_every`` steps.
    """

    def __init__(self, config: TrainConfig, data: ImageData) -> None:
        seed_everything(config.seed)
        assembly = assemble(config, data)
        self.device = device = resolve_device(config.device)
        self.memory_format = memory_format_for(config, assembly)
        self.G = assembly.generator.to(device).to(memory_format=self.memory_format)
        self.D = assembly.discriminator.to(device).to(memory_format=self.memory_format)
        self.opt_g = make_adam(self.G, lr=config.lr_g, betas=config.betas, device=device)
        self.opt_d = make_adam(self.D, lr=config.lr_d, betas=config.betas, device=device)
        self.image_size = self.G.image_shape[-1]
        self.images = resized_uint8(data.images.to(device), self.image_size)  # resized once, as gankit does
        self.batch_size = config.batch_size
        self.latent_dim = self.G.latent_dim
        self.log_every = config.log_every
        self.seed = config.seed
        self.noise = torch.Generator(device).manual_seed(config.seed)
        self.sums = torch.zeros(6, device=device)
        self.step = 0
        self.order = torch.empty(0, dtype=torch.int64)
        self.per_epoch = len(self.images) // self.batch_size

    def real_batch(self) -> Tensor:
        epoch, index = divmod(self.step, self.per_epoch)
        if index == 0:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)  # gankit's epoch orders
            self.order = torch.randperm(len(self.images), generator=generator).to(self.device)
        picked = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        real = self.images[picked].float().mul_(2.0 / 255.0).sub_(1.0)
        return real.contiguous(memory_format=self.memory_format)

    def run(self, steps: int) -> int:
        G, D, opt_g, opt_d = self.G, self.D, self.opt_g, self.opt_d
        for _ in range(steps):
            real = self.real_batch()
            latent = torch.randn(self.batch_size, self.latent_dim, generator=self.noise, device=self.device)
            fake = G(latent)
            real_logits = D(real)
            fake_logits = D(fake.detach())
            d_loss = F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
            D.requires_grad_(False)
            g_loss = F.softplus(-D(fake)).mean()
            opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
            opt_g.step()
            D.requires_grad_(True)
            with torch.no_grad():
                real_mean, fake_mean = real_logits.mean(), fake_logits.mean()  # the engine's D statistics
                real_prob, fake_prob = real_logits.sigmoid().mean(), fake_logits.sigmoid().mean()  # nonsat's metrics
                self.sums += torch.stack([d_loss.detach(), g_loss.detach(), real_mean, fake_mean, real_prob, fake_prob])
            self.step += 1
            if self.step % self.log_every == 0:
                self.sums.tolist()
                self.sums.zero_()
        sync(self.device)
        return steps * self.batch_size


class SeedsLoop:
    """The seeds' loop (pytorch/examples ``dcgan/main.py``) around the same models and initial weights.

    D is wrapped with a Sigmoid and trained with ``BCELoss`` on separate real and fake passes; the labels are
    built each step with ``torch.full``; ``.item()`` reads D(x), D(G(z)) twice and both losses every step; Adam
    is PyTorch's default implementation; ``zero_grad()`` on the modules; no channels-last; batches come from the
    seeds' ``DataLoader`` and are moved to the device each step.
    """

    def __init__(self, config: TrainConfig, data: ImageData, loader: torch.utils.data.DataLoader[Any]) -> None:
        seed_everything(config.seed)
        assembly = assemble(config, data)
        self.device = device = resolve_device(config.device)
        self.netG: Generator = assembly.generator.to(device)
        self.netD = nn.Sequential(assembly.discriminator, nn.Sigmoid()).to(device)
        self.criterion = nn.BCELoss()
        self.optimizerD = torch.optim.Adam(self.netD.parameters(), lr=config.lr_d, betas=config.betas)
        self.optimizerG = torch.optim.Adam(self.netG.parameters(), lr=config.lr_g, betas=config.betas)
        self.latent_dim = self.netG.latent_dim
        self.batches = endless(loader)
        self.last: dict[str, float] = {}

    def run(self, steps: int) -> int:
        netG, netD, criterion, device = self.netG, self.netD, self.criterion, self.device
        served = 0
        for _ in range(steps):
            real_cpu, _ = next(self.batches)
            real = real_cpu.to(device)
            batch_size = real.size(0)
            netD.zero_grad()
            label = torch.full((batch_size,), 1.0, dtype=real.dtype, device=device)
            output = netD(real).view(-1)
            errD_real = criterion(output, label)
            errD_real.backward()
            D_x = output.mean().item()
            noise = torch.randn(batch_size, self.latent_dim, device=device)
            fake = netG(noise)
            label.fill_(0.0)
            output = netD(fake.detach()).view(-1)
            errD_fake = criterion(output, label)
            errD_fake.backward()
            D_G_z1 = output.mean().item()
            errD = errD_real + errD_fake
            self.optimizerD.step()
            netG.zero_grad()
            label.fill_(1.0)
            output = netD(fake).view(-1)
            errG = criterion(output, label)
            errG.backward()
            D_G_z2 = output.mean().item()
            self.optimizerG.step()
            self.last = {"d_loss": errD.item(), "g_loss": errG.item(), "D_x": D_x, "D_G_z1": D_G_z1, "D_G_z2": D_G_z2}
            served += batch_size
        sync(device)
        return served


# -- sampling --------------------------------------------------------------------------------------------------------


def write_export(path: Path, model: str, image_size: int, scale: Scale) -> Path:
    """An export of a freshly initialised generator (sampling costs the same whatever the weights)."""
    seed_everything(0)
    options = {"width": scale.dcgan_width} if model == "dcgan" else {"hidden": scale.mlp_hidden}
    generator = create_plugin("generator", model, {**options, "image_size": image_size})
    save_generator(generator, path, plugin_name=model, overwrite=True)
    return path


class Sampling:
    """``gankit.load_generator`` of an export, then ``sample_images`` as ``gankit sample`` calls it."""

    def __init__(self, path: Path, *, count: int, device: str = "cpu") -> None:
        self.path = path
        self.count = count
        self.device = torch.device(device)
        self.generator = load_generator(path, device=self.device)

    def load_seconds(self) -> float:
        started = time.perf_counter()
        load_generator(self.path, device=self.device)
        sync(self.device)
        return time.perf_counter() - started

    def run(self) -> int:
        images = sample_images(self.generator, self.count, seed=0)
        return len(images)
