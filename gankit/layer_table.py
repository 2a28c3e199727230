"""The layer table of a model: each layer's output shape and parameters, from one forward pass on a dummy batch.

Forward hooks record what every layer returns; nothing here knows any architecture, so what works for the built-ins
works for any plugin.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from gankit.errors import PluginError
from gankit.interfaces import Discriminator, Generator

DUMMY_BATCH = 2
"""Images in the dummy batch a model is run on; shapes are reported with this as their first dimension."""


@dataclass(frozen=True)
class LayerInfo:
    """One layer of a model: a leaf module, or any module holding parameters of its own."""

    path: str
    """Dotted path from the model, as in ``state_dict`` keys (``net.0``); empty for the model itself."""
    type: str
    output_shape: tuple[int, ...] | None
    """Shape of the first output of the first call, batch dimension included; None when not a tensor or not run."""
    parameters: int
    """Parameters this module owns (with those of its parametrizations, e.g. spectral norm), not its children's."""
    calls: int
    """How many times the module ran in the one forward pass; 0 for a layer the pass did not use."""


def _layer_modules(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """Leaf modules and modules with parameters of their own, skipping the insides of parametrizations.

    A spectrally normalised convolution is one layer here, counted with its ``weight_orig``-like parameters, rather
    than a convolution plus the modules that compute its weight.
    """
    inside: list[str] = []
    for path, module in model.named_modules():
        if any(path == prefix or path.startswith(prefix + ".") for prefix in inside):
            continue
        if parametrize.is_parametrized(module):
            inside.append(f"{path}.parametrizations" if path else "parametrizations")
        children = [name for name, _ in module.named_children() if name != "parametrizations"]
        if not children or _own_parameters(module) > 0:
            yield path, module


def _own_parameters(module: nn.Module) -> int:
    count = sum(p.numel() for p in module.parameters(recurse=False))
    if parametrize.is_parametrized(module):
        parametrizations: nn.Module = module.parametrizations  # type: ignore[assignment]
        count += sum(p.numel() for p in parametrizations.parameters())
    return count


def _layer_type(module: nn.Module) -> str:
    """``Conv2d``, or ``Conv2d (weight: SpectralNorm)`` for a parametrized one rather than ``ParametrizedConv2d``."""
    if not parametrize.is_parametrized(module):
        return type(module).__name__
    base = type(module).__mro__[1].__name__
    parametrizations: Mapping[str, nn.ModuleList] = module.parametrizations  # type: ignore[assignment]
    applied = ", ".join(
        f"{tensor}: {' + '.join(type(p).__name__.lstrip('_') for p in chain)}"
        for tensor, chain in parametrizations.items()
    )
    return f"{base} ({applied})"


def _first_shape(output: Any) -> tuple[int, ...] | None:
    if isinstance(output, Tensor):
        return tuple(output.shape)
    if isinstance(output, tuple | list) and output and isinstance(output[0], Tensor):
        return tuple(output[0].shape)
    return None


@contextmanager
def _recording(layers: list[tuple[str, nn.Module]], shapes: dict[str, list[tuple[int, ...] | None]]) -> Iterator[None]:
    def hook_for(path: str) -> Any:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            shapes.setdefault(path, []).append(_first_shape(output))

        return hook

    handles = [module.register_forward_hook(hook_for(path)) for path, module in layers]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _dummy_inputs(model: nn.Module) -> dict[str, Tensor]:
    """A latent batch for a generator, a batch of zero images for a discriminator, and labels if conditional."""
    seed = torch.Generator().manual_seed(0)
    inputs: dict[str, Tensor] = {}
    if isinstance(model, Generator):
        inputs["latent"] = model.sample_latent(DUMMY_BATCH, generator=seed)
    elif isinstance(model, Discriminator):
        inputs["images"] = torch.zeros(DUMMY_BATCH, *model.image_shape)
    num_classes = int(getattr(model, "num_classes", 0))
    if num_classes:
        inputs["labels"] = torch.arange(DUMMY_BATCH) % num_classes
    return inputs


def layer_fields(model: nn.Module, *, who: str) -> dict[str, Any]:
    """Run ``model`` once on a dummy batch in eval mode, with hooks on its layers: the ``PluginDescription`` fields of
    the layer table (``layers``, shapes, parameter counts, warnings). ``who`` names the plugin in a failure."""
    layers = list(_layer_modules(model))
    shapes: dict[str, list[tuple[int, ...] | None]] = {}
    inputs = _dummy_inputs(model)
    model.eval()
    try:
        with torch.no_grad(), _recording(layers, shapes):
            output = model(*inputs.values())
    except Exception as exc:  # a plugin's forward may fail in any way; say where, in one line
        ran = [path for path, _ in layers if path in shapes]
        after = f" after layer '{ran[-1]}'" if ran else ""
        shown = ", ".join(f"{key} {tuple(value.shape)}" for key, value in inputs.items())
        raise PluginError(
            f"{who} failed on a dummy batch ({shown}){after}: {type(exc).__name__}: {' '.join(str(exc).split())}"
        ) from exc
    rows = tuple(
        LayerInfo(
            path=path,
            type=_layer_type(module),
            output_shape=shapes[path][0] if path in shapes else None,
            parameters=_own_parameters(module),
            calls=len(shapes.get(path, [])),
        )
        for path, module in layers
    )
    parameters = list(model.parameters())
    output_shape = _first_shape(output)
    return dict(
        layers=rows,
        input_shapes={key: tuple(value.shape) for key, value in inputs.items()},
        output_shape=output_shape,
        total_parameters=sum(p.numel() for p in parameters),
        trainable_parameters=sum(p.numel() for p in parameters if p.requires_grad),
        parameter_bytes=sum(p.numel() * p.element_size() for p in parameters),
        warnings=tuple(_contract_warnings(model, output)),
    )


def _contract_warnings(model: nn.Module, output: Any) -> list[str]:
    """What ``gankit.contract`` would refuse in the dummy pass's output, as warnings (``info`` still describes it)."""
    from gankit.contract import discriminator_problems, generator_problems

    if isinstance(model, Generator):
        return generator_problems(output, model, DUMMY_BATCH)
    if isinstance(model, Discriminator):
        return discriminator_problems(output, DUMMY_BATCH)
    return []
