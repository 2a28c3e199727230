"""Memory a model needs, known before it exists: built on the meta device, its bytes compared with what is free.

Options within their bounds can still describe a model no machine holds (``--gen mlp --gen-opt hidden=4096
--image-size 1024`` is 69 GB of weights). A model built under ``torch.device("meta")`` has every parameter's shape
and dtype but allocates nothing, so its size is known in microseconds and an impossible one is refused in one line
before the allocator fails. Training counts gradients and Adam's two moments on top of the weights.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from gankit.errors import ConfigError, GankitError, PluginFailure
from gankit.files import printable
from gankit.interfaces import PluginOptions
from gankit.registry._registry import Registry, registry

GB = 1e9

TRAINING_COPIES = 4
"""Bytes per parameter byte when training with Adam: the weights, their gradients and the two moments."""


class _SkipInit(TorchFunctionMode):
    """``torch.nn.init`` does nothing: on the meta device there are no values to initialise, and meta kernels for
    the random fills import ``torch._dynamo`` (about a second at every start-up)."""

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if getattr(func, "__module__", None) == "torch.nn.init":
            return args[0] if args else kwargs.get("tensor")
        return func(*args, **kwargs)


@contextmanager
def on_meta() -> Iterator[None]:
    """Build models on the meta device: shapes and dtypes, no memory, no initialisation. What is built inside
    is only for sizing and shape checks; the one place gankit builds on meta (plugins' imports happen outside it, so
    module-level tensors are real)."""
    with torch.device("meta"), _SkipInit():
        yield


def build_on_meta(
    kind: str, name: str, options: Mapping[str, Any] | PluginOptions, *, plugins: Registry = registry
) -> nn.Module | None:
    """Plugin ``name`` built on the meta device, which allocates nothing; None when its constructor needs real
    tensors (then nothing can be said before building it for real). Bad names and options raise as usual."""
    plugins.load(kind, name)  # imported outside the meta context, so module-level tensors are real
    try:
        with on_meta():
            model = plugins.create(kind, name, options)
    except Exception as exc:
        if not on_meta_only(exc):
            raise
        return None
    return model if isinstance(model, nn.Module) else None


def on_meta_only(exc: Exception) -> bool:
    """Whether ``exc``, raised while building on the meta device, may be the meta device's doing: a constructor
    that reads tensor values (``.item()``, data-dependent shapes). Bad names and options are gankit's own errors and
    fail the same way for real; a constructor's failure is left for the real build to report."""
    return isinstance(exc, PluginFailure) or not isinstance(exc, GankitError)


def weight_bytes(model: nn.Module) -> int:
    """Bytes of the model's parameters and buffers (what its state dict holds), shared tensors counted once."""
    seen: set[int] = set()
    total = 0
    for tensor in [*model.parameters(), *model.buffers()]:
        if id(tensor) not in seen:
            seen.add(id(tensor))
            total += tensor.numel() * tensor.element_size()
    return total


def training_bytes(model: nn.Module) -> int:
    """Bytes training the model holds besides activations: weights, gradients and Adam state for every parameter."""
    parameters = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    return weight_bytes(model) + (TRAINING_COPIES - 1) * parameters


def host_available_bytes() -> int | None:
    """Memory this process can still get on this machine (RAM and swap, within its cgroup and its address-space
    limit); None when unknown."""
    found: list[int] = []
    try:
        fields = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines() if ":" in line)
        found.append((int(fields["MemAvailable"].split()[0]) + int(fields.get("SwapFree", "0 kB").split()[0])) * 1024)
    except (OSError, KeyError, ValueError):  # not Linux: free physical pages, without the page cache or swap
        with contextlib.suppress(AttributeError, ValueError, OSError):
            found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            found.append(int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text().strip()))
    except (OSError, ValueError):
        pass
    with contextlib.suppress(ImportError, OSError, ValueError, KeyError):  # ulimit -v: the address space left
        import resource

        space = resource.getrlimit(resource.RLIMIT_AS)[0]
        if space != resource.RLIM_INFINITY:
            status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
            found.append(space - int(status["VmSize"].split()[0]) * 1024)
    return max(min(found), 0) if found else None


def available_bytes(device: torch.device) -> int | None:
    """Free memory on ``device`` (the host's for the CPU); None when it cannot be known."""
    if device.type == "cuda":
        try:
            free, _ = torch.cuda.mem_get_info(device)
        except (RuntimeError, AssertionError):
            return None
        return int(free)
    if device.type == "cpu":
        return host_available_bytes()
    return None


def _where(device: torch.device) -> str:
    return "this machine" if device.type == "cpu" else f"the GPU ({device})"


def check_fits(needed: int, *, device: torch.device, what: str, counted: str, advice: str) -> None:
    """ConfigError ``<what> needs about X GB <counted>; <device> has Y GB available; <advice>`` unless it fits."""
    available = available_bytes(device)
    if available is not None and needed > available:
        raise ConfigError(
            f"{what} needs about {needed / GB:.1f} GB {counted}; {_where(device)} has {available / GB:.1f} GB "
            f"available; {advice}"
        )


def shrink_advice(*models: nn.Module) -> str:
    """``lower hidden or image_size``: the integer options set above their defaults, which is what grew the model."""
    names: list[str] = []
    for model in models:
        options = getattr(model, "options", None)
        if not isinstance(options, PluginOptions):
            continue
        for field, info in type(options).model_fields.items():
            value, default = getattr(options, field), info.get_default(call_default_factory=True)
            if type(value) is int and type(default) is int and value > default and field not in names:
                names.append(field)
    if not names:
        return "choose smaller options"
    return "lower " + (names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}")


def places(device: torch.device | str) -> list[torch.device]:
    """Where a model built for ``device`` lives: the host first (models are built there), then the device."""
    device = torch.device(device)
    return [torch.device("cpu")] if device.type == "cpu" else [torch.device("cpu"), device]


def check_weights_fit(model: nn.Module, *, kind: str, name: str, device: torch.device | str = "cpu") -> None:
    """ConfigError when the weights of ``model`` (built on meta) fit neither the host nor ``device``."""
    needed, what = weight_bytes(model), f"{kind} '{printable(name, limit=80)}' with these options"
    for place in places(device):
        check_fits(needed, device=place, what=what, counted="for its weights alone", advice=shrink_advice(model))


def check_model_fits(
    kind: str,
    name: str,
    options: Mapping[str, Any] | PluginOptions,
    *,
    device: torch.device | str = "cpu",
    plugins: Registry = registry,
) -> nn.Module | None:
    """Build plugin ``name`` on the meta device and refuse it in one line when its weights cannot be allocated.

    Returns the meta model (for shape checks against a file), or None when it cannot be built on meta.
    """
    model = build_on_meta(kind, name, options, plugins=plugins)
    if model is not None:
        check_weights_fit(model, kind=kind, name=name, device=device)
    return model


def check_training_fits(
    generator: nn.Module,
    discriminator: nn.Module,
    *,
    names: tuple[str, str],
    data_bytes: int,
    ema: bool,
    device: torch.device,
    processes: int = 1,
) -> None:
    """ConfigError when training the two models (built on meta) cannot fit: on the host, which builds them, and on
    ``device``, which holds their weights, gradients, Adam state, an EMA copy and ``data_bytes`` of training
    images. ``processes`` copies run on this machine (``--nproc``); each has its own GPU. Activations are extra."""
    weights = weight_bytes(generator) + weight_bytes(discriminator)
    training = training_bytes(generator) + training_bytes(discriminator) + data_bytes
    training += weight_bytes(generator) if ema else 0
    generator_name, discriminator_name = (printable(name, limit=80) for name in names)
    what = f"training generator '{generator_name}' and discriminator '{discriminator_name}' with these options"
    copies = f" in each of {processes} processes" if processes > 1 else ""
    counted = f"for weights, gradients, Adam state and images{copies}"
    advice = shrink_advice(generator, discriminator)
    if device.type == "cpu":
        check_fits(training * processes, device=device, what=what, counted=counted, advice=advice)
        return
    check_fits(
        weights * processes, device=torch.device("cpu"), what=what, counted="for its weights alone", advice=advice
    )
    check_fits(training, device=device, what=what, counted=counted, advice=advice)
