"""Check what plugins return before the first step: the dataset's arrays, and one tiny forward of each model.

``check_data`` looks at what ``Dataset.load`` returned; ``check_models`` runs the generator on a batch of
``CHECK_BATCH`` latents and the discriminator on its output. Each violation is a ``ContractError``: one line naming
the kind, the plugin, its distribution and what to change. The forward is side-effect free for the real models: it
runs under ``no_grad`` in eval mode, every buffer (BatchNorm running statistics, the spectral-norm vectors) is saved
before and written back after, the train/eval mode of every submodule is restored, and the global random generators
are forked, so a run with the check is identical to one without it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from gankit.errors import ContractError
from gankit.interfaces import Discriminator, Generator, ImageData
from gankit.registry._blame import plugin_code

CHECK_BATCH = 2
"""Latents in the check's forward pass."""

RANGE_TOLERANCE = 1e-3
"""How far outside [-1, 1] a generator's values may stray (rounding in a tanh under reduced precision)."""

MAX_CHANNELS = 4


def _shape(tensor: Tensor) -> str:
    return str(tuple(tensor.shape))


def check_data(data: Any, who: str) -> ImageData:
    """``data`` as returned by ``who``'s ``load``, checked: uint8 ``(N, C, H, W)``, 1 <= C <= 4, int64 ``(N,)`` labels
    within ``num_classes``. Returns it; raises ``ContractError`` for the first violation."""
    if not isinstance(data, ImageData):
        raise ContractError(f"{who} returned {type(data).__name__} from load; return a gankit.interfaces.ImageData")
    images, labels = data.images, data.labels
    if not isinstance(images, Tensor) or not isinstance(labels, Tensor):
        raise ContractError(f"{who} returned images and labels that are not both torch tensors; return tensors")
    if images.dim() != 4:
        fix = "add the channel axis, e.g. images.unsqueeze(1)" if images.dim() == 3 else "reshape them"
        raise ContractError(
            f"{who} returned images of shape {_shape(images)}; they must be (N, C, H, W) with a channel axis: {fix}"
        )
    if images.dtype != torch.uint8:
        raise ContractError(
            f"{who} returned images of dtype {images.dtype}; they must be torch.uint8 in 0..255, "
            "e.g. (x * 255).round().to(torch.uint8) for floats in [0, 1]"
        )
    count, channels = int(images.shape[0]), int(images.shape[1])
    if count == 0:
        raise ContractError(f"{who} returned no images (shape {_shape(images)}); return at least one batch")
    if not 1 <= channels <= MAX_CHANNELS:
        raise ContractError(
            f"{who} returned images of shape {_shape(images)}, {channels} channels; 1 to {MAX_CHANNELS} are "
            "supported, with the channel axis second: (N, C, H, W)"
        )
    if labels.dtype != torch.int64 or tuple(labels.shape) != (count,):
        raise ContractError(
            f"{who} returned labels of dtype {labels.dtype} and shape {_shape(labels)} for {count} images; they "
            f"must be torch.int64 of shape ({count},), zeros for unlabelled data"
        )
    if data.num_classes < 0:
        raise ContractError(f"{who} returned num_classes={data.num_classes}; it must be 0 (unlabelled) or more")
    if data.num_classes > 0:
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= data.num_classes:
            raise ContractError(
                f"{who} returned labels in {low}..{high} but num_classes={data.num_classes}; labels must lie in "
                f"0..{data.num_classes - 1}"
            )
    return data


def generator_problems(output: Any, generator: Generator, batch: int = CHECK_BATCH) -> list[str]:
    """What is wrong with ``output``, the generator's answer to ``batch`` latents: '<problem>; <what to change>'."""
    if not isinstance(output, Tensor):
        return [f"returned {type(output).__name__} from forward; return one tensor of images"]
    expected = (batch, *generator.image_shape)
    if tuple(output.shape) != expected:
        return [
            f"returned images of shape {_shape(output)} for {batch} latents, but its image_shape is "
            f"{tuple(generator.image_shape)}; make forward return (N, *image_shape) = {expected}, or make image_shape "
            "(its options) say what forward returns"
        ]
    if not output.is_floating_point():
        return [f"returned images of dtype {output.dtype}; return floating point images in [-1, 1]"]
    values = output.detach().float()
    if not bool(torch.isfinite(values).all()):
        return ["returned NaN or infinite values for a batch of random latents; check its initialisation"]
    low, high = float(values.min()), float(values.max())
    if low < -1 - RANGE_TOLERANCE or high > 1 + RANGE_TOLERANCE:
        return [
            f"returned values in [{low:.3g}, {high:.3g}]; images must lie in [-1, 1]: end forward with tanh() "
            "(or clamp)"
        ]
    return []


def discriminator_problems(output: Any, batch: int = CHECK_BATCH) -> list[str]:
    """What is wrong with ``output``, the discriminator's answer to ``batch`` images: '<problem>; <what to change>'."""
    if not isinstance(output, Tensor):
        return [f"returned {type(output).__name__} from forward; return one tensor of logits"]
    if tuple(output.shape) != (batch,):
        fix = "e.g. end forward with .flatten()" if output.numel() == batch else "one raw logit per image"
        return [f"returned shape {_shape(output)} for {batch} images; it must return logits of shape (N,): {fix}"]
    if not output.is_floating_point():
        return [f"returned logits of dtype {output.dtype}; return floating point logits"]
    if not bool(torch.isfinite(output.detach()).all()):
        return ["returned NaN or infinite logits for a batch of images; check its initialisation"]
    return []


@contextmanager
def untouched(*models: nn.Module) -> Iterator[None]:
    """Run the models in eval mode without gradients, and leave them, their buffers and the global RNG as they were."""
    modes = [(module, module.training) for model in models for module in model.modules()]
    saved = [(buffer, buffer.detach().clone()) for model in models for buffer in model.buffers()]
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            for model in models:
                model.eval()
            yield
    finally:
        with torch.no_grad():
            for buffer, value in saved:
                buffer.copy_(value)
        for module, training in modes:
            module.training = training


def _labels(model: Generator | Discriminator, device: torch.device) -> Tensor | None:
    return torch.arange(CHECK_BATCH, device=device) % model.num_classes if model.num_classes else None


def _device(model: nn.Module) -> torch.device:
    found = next(iter(model.parameters()), None)
    return found.device if found is not None else torch.device("cpu")


def run_generator(generator: Generator, who: str) -> Tensor:
    """Generator output for ``CHECK_BATCH`` fixed latents (call inside ``untouched``), checked; ``ContractError``."""
    device = _device(generator)
    with plugin_code(who, "in forward on a check batch"):
        latent = generator.sample_latent(CHECK_BATCH, generator=torch.Generator(device).manual_seed(0))
        output = generator(latent.to(device), _labels(generator, device))
    problems = generator_problems(output, generator)
    if problems:
        raise ContractError(f"{who} {problems[0]}")
    images: Tensor = output
    return images


def check_generator(generator: Generator, who: str) -> None:
    """One tiny forward of ``generator``, without side effects; raises ``ContractError`` naming ``who``."""
    with untouched(generator):
        run_generator(generator, who)


def check_models(generator: Generator, discriminator: Discriminator, *, who_g: str, who_d: str) -> None:
    """The generator on ``CHECK_BATCH`` latents, the discriminator on its images; nothing about either changes."""
    with untouched(generator, discriminator):
        images = run_generator(generator, who_g).to(_device(discriminator), torch.float32)
        with plugin_code(who_d, "in forward on a check batch"):
            logits = discriminator(images, _labels(discriminator, images.device))
        problems = discriminator_problems(logits)
        if problems:
            raise ContractError(f"{who_d} {problems[0]}")
