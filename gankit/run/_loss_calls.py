"""Calling the loss plugin: what it declares is honoured, what it returns is checked, its mistakes name it.

``LossCalls`` wraps the run's ``Loss``: it checks the declarations once (``metric_names``,
``regularization_interval``), adds the lazy regulariser on its steps, refuses a result that is not a scalar or that
was cut from the graph, refuses inputs modified in place (their version counters, read on the host, say so at no
cost), turns the autograd error of an undeclared input gradient and the ``None`` of undeclared real logits into one
line saying what to set, and collects the metrics the loss reported during a step, on the device.
"""

from __future__ import annotations

import re
import traceback

import torch
from torch import Tensor, nn

from gankit.errors import PluginError
from gankit.files import ENGINE_FIELDS
from gankit.interfaces import DiscriminatorInputs, GeneratorInputs, Loss

METRIC_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")
"""What a loss metric may be called: a lowercase identifier of up to 40 characters."""

INPUT_TENSORS = ("real_images", "fake_images", "real_logits", "fake_logits")
"""The tensors of the inputs a loss reads and must not modify: autograd, the other objective and the logged
statistics still need them."""


def versions(inputs: DiscriminatorInputs | GeneratorInputs) -> dict[str, int]:
    """The version counter of each input tensor: an in-place operation on a tensor (or on a view or ``.detach()`` of
    it) increments it; reading it costs no device synchronisation."""
    found = {name: getattr(inputs, name, None) for name in INPUT_TENSORS}
    return {name: tensor._version for name, tensor in found.items() if isinstance(tensor, Tensor)}


class LossCalls:
    """The engine's side of the loss contract, for one run's loss ``loss`` (named ``who`` in messages)."""

    def __init__(self, loss: Loss, who: str, device: torch.device) -> None:
        self.loss = loss
        self.who = who
        declared: object = loss.metric_names  # set in __init__ maybe, after the class was checked
        if isinstance(declared, str):
            raise PluginError(
                f"{who} has metric_names = {declared!r}, a string, not a tuple of names; write "
                f'("{declared}",), with the comma'
            )
        self.metric_names = tuple(loss.metric_names)
        for name in self.metric_names:
            if not isinstance(name, str) or not METRIC_NAME.fullmatch(name) or name in ENGINE_FIELDS:
                raise PluginError(
                    f"{who} declares the metric {name!r}; metric_names must be lowercase identifiers "
                    f"(up to 40 characters) that gankit does not log itself ({', '.join(sorted(ENGINE_FIELDS))})"
                )
        if len(set(self.metric_names)) != len(self.metric_names):
            raise PluginError(f"{who} declares a metric twice in metric_names {self.metric_names}; list each once")
        interval = loss.regularization_interval
        if not isinstance(interval, int) or isinstance(interval, bool) or interval < 1:
            raise PluginError(f"{who} has regularization_interval={interval!r}; it must be an integer of 1 or more")
        self.interval = interval
        self.has_regularizer = bool(loss.uses_regularizer)
        self._zero = torch.zeros((), device=device)
        self._reported: dict[str, Tensor] = {}
        self.discriminator_terms: tuple[Tensor, Tensor] = (self._zero, self._zero)
        """The last discriminator update's ``discriminator_loss`` and regulariser (0 when it did not run), detached
        on the device: what the step watches for the first non-finite value."""

    def regularizes(self, step: int) -> bool:
        """Whether the discriminator updates of ``step`` add the regulariser (and so need grad on real images)."""
        return self.has_regularizer and step % self.interval == 0

    def needs_real_grad(self, step: int) -> bool:
        return self.loss.requires_real_grad or self.regularizes(step)

    def discriminator(self, inputs: DiscriminatorInputs) -> Tensor:
        """``discriminator_loss``, plus ``interval * discriminator_regularizer`` on the steps that regularise."""
        try:
            value = self._call("discriminator_loss", inputs)
            penalty = self._call("discriminator_regularizer", inputs) if self.regularizes(inputs.step) else None
        except RuntimeError as exc:
            if "does not require grad" not in str(exc) or inputs.real_images.requires_grad:
                raise
            raise PluginError(
                f"{self.who} differentiated with respect to inputs.real_images, which do not require grad on this "
                "update; set requires_real_grad = True on the loss class, or compute the penalty in "
                f"discriminator_regularizer ({exc})"
            ) from exc
        self.discriminator_terms = (
            value.detach().float(),
            penalty.detach().float() if penalty is not None else self._zero,
        )
        if penalty is not None:
            value = value + self.interval * penalty
        self._collect(inputs.metrics)
        return value

    def generator(self, inputs: GeneratorInputs) -> Tensor:
        value = self._call("generator_loss", inputs)
        self._collect(inputs.metrics)
        return value

    def _call(self, method: str, inputs: DiscriminatorInputs | GeneratorInputs) -> Tensor:
        """The loss's ``method`` on ``inputs``, its result checked, and the inputs checked to be as they were."""
        before = versions(inputs)
        try:
            value = getattr(self.loss, method)(inputs)
        except (AttributeError, TypeError) as exc:
            if isinstance(inputs, GeneratorInputs) and inputs.real_logits is None and _read_real_logits(exc):
                raise PluginError(
                    f"{self.who} read inputs.real_logits in {method}, which are None unless the loss class sets "
                    f"generator_needs_real_logits = True; set it ({type(exc).__name__}: {exc})"
                ) from exc
            raise
        changed = [name for name, version in versions(inputs).items() if version != before[name]]
        if changed:
            raise PluginError(
                f"{self.who} modified inputs.{changed[0]} in place in {method} (an operation ending in _, such as "
                "mul_(), clamp_() or sigmoid_(), or an assignment into it); autograd and gankit still need them as "
                "they were: compute on a new tensor instead (sigmoid(), not sigmoid_())"
            )
        return self._scalar(value, method, inputs)

    def _scalar(self, value: object, method: str, inputs: DiscriminatorInputs | GeneratorInputs) -> Tensor:
        """``value`` when it is a floating 0-dimensional tensor on the graph; else one line naming the loss and the
        fix."""
        if not isinstance(value, Tensor):
            raise PluginError(f"{self.who} returned {type(value).__name__} from {method}; return a scalar tensor")
        if value.ndim != 0 or not value.is_floating_point():
            raise PluginError(
                f"{self.who} returned a {value.dtype} tensor of shape {tuple(value.shape)} from {method}; return a "
                "floating-point scalar (reduce it, e.g. with .mean())"
            )
        if not value.requires_grad and torch.is_grad_enabled() and inputs.fake_logits.requires_grad:
            raise PluginError(
                f"{self.who} returned a loss that does not require grad from {method}: it was cut from the graph "
                "(by .item(), float(), .detach(), torch.tensor(...) or numpy); compute it from the inputs' logits "
                "with torch operations"
            )
        return value

    def _collect(self, metrics: dict[str, Tensor]) -> None:
        for name, value in metrics.items():
            if name not in self.metric_names:
                declared = ", ".join(self.metric_names) or "none"
                raise PluginError(
                    f"{self.who} reported the metric {name!r}, which is not in its metric_names ({declared}); "
                    f"add it there"
                )
            if not isinstance(value, Tensor) or value.numel() != 1:
                shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
                raise PluginError(f"{self.who} reported {name!r} as {shape}; report a scalar tensor")
            self._reported[name] = value.detach().reshape(()).to(self._zero.device, torch.float32)

    def take_metrics(self) -> tuple[list[Tensor], tuple[bool, ...]]:
        """The step's reported metrics in ``metric_names`` order (0 where absent) and which were reported; resets."""
        reported, self._reported = self._reported, {}
        values = [reported.get(name, self._zero) for name in self.metric_names]
        return values, tuple(name in reported for name in self.metric_names)


def _read_real_logits(exc: BaseException) -> bool:
    """Whether a line of the traceback of ``exc`` after the loss was called reads ``real_logits``."""
    return any("real_logits" in (frame.line or "") for frame in traceback.extract_tb(exc.__traceback__)[1:])


def logits_leaving_buffers(discriminator: nn.Module, images: Tensor, labels: Tensor | None) -> Tensor:
    """``discriminator(images, labels)`` without grad, in its current mode, with its buffers left as they were.

    In train mode a forward updates BatchNorm's running statistics and advances spectral normalisation's power
    iteration in place; run on copies of the buffers (``torch.func.functional_call``), this one changes neither.
    """
    copies = {name: buffer.clone() for name, buffer in discriminator.named_buffers()}
    with torch.no_grad():
        logits: Tensor = torch.func.functional_call(discriminator, copies, (images, labels))
    return logits
