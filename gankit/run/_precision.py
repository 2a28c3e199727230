"""Mixed precision: one policy object decides autocast and gradient scaling, on CUDA and CPU alike.

The same code path runs on CPU with ``--amp bf16`` and ``--amp fp16``, so the tests exercise what CUDA runs.
"""

from __future__ import annotations

import contextlib
from contextlib import AbstractContextManager
from dataclasses import dataclass

import torch

from gankit.errors import ConfigError
from gankit.run._config import AmpMode, DeviceChoice


def resolve_device(choice: DeviceChoice) -> torch.device:
    """``auto`` picks CUDA when it is available; asking for CUDA without it is a user error, not a crash."""
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but no CUDA GPU is available; use --device cpu or auto")
    return torch.device(choice)


@dataclass(frozen=True)
class Precision:
    """How the forward passes run (``dtype`` None means float32) and whether gradients are scaled (fp16 only)."""

    device_type: str
    dtype: torch.dtype | None

    @property
    def name(self) -> str:
        return {None: "off", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]

    @property
    def scaled(self) -> bool:
        """fp16 underflows small gradients, so its losses are scaled; bf16 has float32's range and needs no scaler."""
        return self.dtype == torch.float16

    def autocast(self) -> AbstractContextManager[object]:
        """Autocast to ``dtype``; in float32 a no-op context (a disabled ``torch.autocast`` still costs ~10 us)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """A scaler per optimizer; disabled (a no-op pass-through) unless running fp16."""
        return torch.amp.GradScaler(self.device_type, enabled=self.scaled)


def resolve_precision(mode: AmpMode, device: torch.device) -> Precision:
    """``auto``: bf16 on a CUDA GPU that supports it, else fp16 with scaling on CUDA; float32 on CPU."""
    if mode == "auto":
        if device.type != "cuda":
            return Precision(device.type, None)
        return Precision("cuda", torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
    dtypes = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}
    return Precision(device.type, dtypes[mode])
