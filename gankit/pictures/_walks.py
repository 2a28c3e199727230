"""Latent walks: spherical interpolation through random latents, drawn as a grid picture and an animated GIF.

The DCGAN paper's walks (Radford et al. 2015, section 6.1), with the spherical interpolation of White (2016,
"Sampling Generative Networks"), which keeps Gaussian latents at the norm the generator was trained on. The walk
is a closed loop through ``K`` latents drawn exactly like ``gankit sample --n K --seed SEED`` draws its latents, so
the walk passes through those very images; a conditional generator shows each frame under every label.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from torch import Tensor
from torch.nn import functional

from gankit.errors import FileFormatError
from gankit.files import atomic_write
from gankit.interfaces import Generator
from gankit.pictures._figures import save_progress_gif
from gankit.pictures._sampling import generate, save_image_grid

_PARALLEL = 1e-6
"""Below this ``sin`` of the angle between two latents, slerp falls back to a straight line (it is one there)."""


def slerp(start: Tensor, end: Tensor, t: Tensor | float) -> Tensor:
    """Spherical interpolation from ``start`` (``t = 0``, exactly) to ``end`` (``t = 1``, exactly) along the last dim.

    ``start`` and ``end`` are ``(..., D)``; ``t`` broadcasts against their leading dims. The path turns at constant
    speed through the angle ``omega`` between the two vectors:
    ``sin((1 - t) omega) / sin(omega) * start + sin(t omega) / sin(omega) * end``, so between unit vectors every
    point is a unit vector, and between vectors of equal norm every point has that norm.
    """
    t = torch.as_tensor(t, dtype=start.dtype, device=start.device).unsqueeze(-1)
    cos = (functional.normalize(start, dim=-1) * functional.normalize(end, dim=-1)).sum(-1, keepdim=True)
    omega = torch.acos(cos.clamp(-1.0, 1.0))
    sin = torch.sin(omega)
    straight = sin < _PARALLEL
    safe = torch.where(straight, torch.ones_like(sin), sin)
    weight_start = torch.where(straight, 1.0 - t, torch.sin((1.0 - t) * omega) / safe)
    weight_end = torch.where(straight, t, torch.sin(t * omega) / safe)
    return weight_start * start + weight_end * end


def latent_walk(keypoints: Tensor, steps: int) -> Tensor:
    """A closed loop through ``keypoints`` ``(K, D)``: ``(K, steps, D)``, leg ``i`` going from keypoint ``i`` toward
    keypoint ``i + 1`` (the last back to the first) at ``t = 0, 1/steps, ..., (steps - 1)/steps``.

    ``walk[i, 0]`` is keypoint ``i`` exactly, so the legs joined are a loop with no repeated frame.
    """
    if keypoints.dim() != 2 or keypoints.shape[0] < 2:
        raise ValueError(f"keypoints must be (K, D) with K >= 2, got shape {tuple(keypoints.shape)}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    t = torch.arange(steps, dtype=keypoints.dtype, device=keypoints.device) / steps
    legs = slerp(keypoints[None], keypoints.roll(-1, dims=0)[None], t[:, None])  # (steps, K, D)
    return legs.transpose(0, 1).contiguous()


def walk_images(generator: Generator, keypoints: int, *, seed: int, steps: int = 8, label: int | None = None) -> Tensor:
    """The images of a latent walk: ``(K, steps, P, C, H, W)`` float32 on the CPU, in ``[-1, 1]``.

    The ``keypoints`` latents come from ``generator.sample_latent`` seeded with ``seed``, as ``gankit sample``
    draws them. ``P`` is 1 for an unconditional generator or a given ``label``; otherwise every frame's latent is
    shown under each label in turn, ``P = num_classes``.
    """
    if label is not None and not 0 <= label < generator.num_classes:
        raise ValueError(f"label {label} does not exist: this generator has num_classes = {generator.num_classes}")
    latents = latent_walk(generator.sample_latent(keypoints, generator=torch.Generator().manual_seed(seed)), steps)
    frames = latents.reshape(keypoints * steps, -1)
    panels = generator.num_classes if generator.num_classes and label is None else 1
    labels = None
    if generator.num_classes:
        labels = torch.arange(panels).repeat(len(frames)) if label is None else torch.full((len(frames),), label)
    images = generate(generator, frames.repeat_interleave(panels, dim=0), labels)
    return images.reshape(keypoints, steps, panels, *images.shape[1:])


def save_walk(images: Tensor, grid_path: Path, gif_path: Path, *, nrow: int | None = None, frame_ms: int = 100) -> None:
    """Write a walk of ``walk_images`` as one grid picture and one looping GIF, each atomically.

    The grid holds every frame in order: a leg per row when ``P = 1``, else a frame per row with its ``P`` panels
    (``nrow`` overrides the columns). The GIF shows the frames in turn, each a row of its ``P`` panels.
    """
    if images.dim() != 6:
        raise ValueError(f"expected a walk (K, steps, P, C, H, W), got shape {tuple(images.shape)}")
    keypoints, steps, panels = images.shape[:3]
    frames = images.reshape(keypoints * steps, panels, *images.shape[3:])
    columns = nrow or (steps if panels == 1 else panels)
    save_image_grid(frames.flatten(0, 1), grid_path, nrow=columns)
    with tempfile.TemporaryDirectory(prefix="gankit-walk-") as folder:
        pictures = [Path(folder) / f"frame_{index:05d}.png" for index in range(len(frames))]
        for frame, picture in zip(frames, pictures, strict=True):
            save_image_grid(frame, picture, nrow=panels)
        atomic_write(
            Path(gif_path),
            lambda tmp: save_progress_gif(pictures, tmp, frame_ms=frame_ms, hold_last=False),
            overwrite=True,
            error=FileFormatError,
        )
