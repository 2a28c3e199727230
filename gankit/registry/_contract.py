"""Check plugins before they train: their declarations when a class loads, what they return before the first step.

``class_problem`` reads a plugin class: its ``Options`` (a pydantic model of the kind's options, with defaults that
pass its own bounds and validators), the signature of each method gankit calls, and what it declares against its
``api_version``. ``check_data`` looks at what ``Dataset.load`` returned; ``check_models`` runs the generator on a
batch of ``CHECK_BATCH`` latents and the discriminator on its output; ``check_training_batch`` runs both again at
the training batch size, on the training device, under the training precision, and the discriminator on a real
batch too. Each violation is one line naming the kind, the plugin, its distribution and what to change. The
forwards are side-effect free for the real models: they run under ``no_grad`` in eval mode, every buffer (BatchNorm
running statistics, the spectral-norm vectors) is saved before and written back after, the train/eval mode of every
submodule is restored, and the global random generators are forked, so a run with the check is identical to one
without it. What only happens in train mode is therefore not seen here; the step itself names the plugin then.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import torch
from pydantic import ValidationError
from torch import Tensor, nn

from gankit.errors import ContractError
from gankit.interfaces import RECOMMENDABLE_SETTINGS, Discriminator, Generator, ImageData, Loss, PluginOptions
from gankit.registry._blame import plugin_code

CHECK_BATCH = 2
"""Latents in the check's forward pass."""

RANGE_TOLERANCE = 1e-3
"""How far outside [-1, 1] a generator's values may stray (rounding in a tanh under reduced precision)."""

MAX_CHANNELS = 4

TRAINING_DTYPE = torch.float32
"""The dtype gankit trains in; autocast (``--amp``) adds its own dtype on top."""


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
            f"supported, with the channel axis second: (N, C, H, W){_channels_last_hint(images)}"
        )
    if images.shape[2] != images.shape[3]:
        raise ContractError(
            f"{who} returned images of shape {_shape(images)}, {images.shape[2]}x{images.shape[3]} pixels; the models "
            f"take square images: crop or resize them to a square{_channels_last_hint(images)}"
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


def _channels_last_hint(images: Tensor) -> str:
    """For images that look like (N, H, W, C): the permute that makes them (N, C, H, W)."""
    if 1 <= images.shape[3] <= MAX_CHANNELS and images.shape[1] == images.shape[2] > MAX_CHANNELS:
        return "; they look channels-last (N, H, W, C): return images.permute(0, 3, 1, 2).contiguous()"
    return ""


def generator_problems(
    output: Any, generator: Generator, batch: int = CHECK_BATCH, dtypes: tuple[torch.dtype, ...] = (TRAINING_DTYPE,)
) -> list[str]:
    """What is wrong with ``output``, the generator's answer to ``batch`` latents: '<problem>; <what to change>'.

    ``dtypes`` are those the discriminator can take: float32, and the autocast dtype under ``--amp``."""
    if not isinstance(output, Tensor):
        return [f"returned {type(output).__name__} from forward; return one tensor of images"]
    expected = (batch, *generator.image_shape)
    if output.dim() == 4 and tuple(output.shape[1:]) == generator.image_shape and len(output) != batch:
        return [
            f"returned images of shape {_shape(output)} for {batch} latents; forward must return one image per "
            "latent whatever the batch size: take N from latent.shape[0] (or -1) rather than a fixed number"
        ]
    if tuple(output.shape) != expected:
        return [
            f"returned images of shape {_shape(output)} for {batch} latents, but its image_shape is "
            f"{tuple(generator.image_shape)}; make forward return (N, *image_shape) = {expected}, or make image_shape "
            "(its options) say what forward returns"
        ]
    if not output.is_floating_point():
        return [f"returned images of dtype {output.dtype}; return floating point images in [-1, 1]"]
    if output.dtype not in dtypes:
        names = " or ".join(str(dtype) for dtype in dtypes)
        return [
            f"returned images of dtype {output.dtype}; return {names}, as its layers compute (the discriminator "
            "takes that): drop the .double() or .half(), and make arrays from numpy (float64) .float()"
        ]
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
        if output.dim() == 1 and batch != CHECK_BATCH:
            fix += " whatever the batch size: take N from images.shape[0] (or -1) rather than a fixed number"
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


def check_training_batch(
    generator: Generator,
    discriminator: Discriminator,
    real_images: Tensor,
    labels: Tensor | None,
    *,
    who: Mapping[str, str],
    autocast: Callable[[], AbstractContextManager[object]],
    amp_dtype: torch.dtype | None = None,
) -> None:
    """Both models once more as a training step runs them: at the batch size of ``real_images`` (a real batch, as
    the pipeline cuts it), on their device, under ``autocast``; the discriminator on the fakes and on the real batch.

    It sees what ``check_models`` on 2 latents cannot: a batch size written into a forward, a dtype the
    discriminator cannot take, a dataset whose images are not what the models were built for. ``who`` names the
    ``generator``, ``discriminator`` and ``dataset``. Side-effect free, like ``check_models``.
    """
    batch = len(real_images)
    dtypes = (TRAINING_DTYPE, amp_dtype) if amp_dtype is not None else (TRAINING_DTYPE,)
    if tuple(real_images.shape[1:]) != discriminator.image_shape:
        raise ContractError(
            f"{who['dataset']} gives batches of shape {_shape(real_images)} but {who['discriminator']} was built for "
            f"images of shape {discriminator.image_shape}; give the models the dataset's channels and image size"
        )
    with untouched(generator, discriminator), autocast():
        device = _device(generator)
        doing = f"in forward on a batch of {batch}"
        with plugin_code(who["generator"], doing):
            latent = generator.sample_latent(batch, generator=torch.Generator(device).manual_seed(0))
            fake = generator(latent.to(device), labels)
        problems = generator_problems(fake, generator, batch, dtypes)
        if problems:
            raise ContractError(f"{who['generator']} {problems[0]}")
        for images, what in ((fake, "fake"), (real_images, "real")):
            with plugin_code(who["discriminator"], f"{doing} of {what} images"):
                logits = discriminator(images, labels)
            problems = discriminator_problems(logits, batch)
            if problems:
                raise ContractError(f"{who['discriminator']} {problems[0]} ({what} images)")


# -- declarations, read when a class loads ----------------------------------------------------------------------

API_2_LOSS_FEATURES = (
    "generator_needs_real_logits",
    "metric_names",
    "regularization_interval",
    "discriminator_regularizer",
)
"""What a loss may declare since plugin API 2; a class that says ``api_version = 1`` and uses one is refused."""


def class_problem(cls: type, base: type) -> str | None:
    """What is wrong with plugin class ``cls`` (a subclass of ``base``) before any instance exists, or None:
    '<problem>; <what to change>'. Checks its ``Options``, its defaults, the methods gankit calls and its API."""
    return _options_problem(cls, base) or _signature_problem(cls, base) or _declaration_problem(cls)


def _options_problem(cls: type, base: type) -> str | None:
    options, expected = getattr(cls, "Options", None), getattr(base, "Options", PluginOptions)
    if not (isinstance(options, type) and issubclass(options, expected)):
        shown = options.__qualname__ if isinstance(options, type) else type(options).__name__
        return (
            f"has Options {shown}, which is not a subclass of gankit.interfaces.{expected.__qualname__}; declare "
            f"class Options({expected.__qualname__}) with typed fields (pydantic Field(...))"
        )
    defaults = {
        field.alias or name: field.get_default(call_default_factory=True)
        for name, field in options.model_fields.items()
        if not field.is_required()
    }
    required = any(field.is_required() for field in options.model_fields.values())
    try:
        options.model_validate(defaults)
    except ValidationError as exc:
        for error in exc.errors():
            location = str(error["loc"][0]) if error["loc"] else ""
            if error["type"] == "missing" or (required and location not in defaults):
                continue  # a required field, or a rule across fields that needs the required ones
            if location in defaults:
                return (
                    f"has an invalid default for its option {location} ({defaults[location]!r}): {error['msg']}; "
                    "make the default pass its own bounds and validators"
                )
            return f"has defaults that fail its Options' own validation: {error['msg']}; fix the defaults"
    return None


def _called_methods(base: type) -> Iterator[tuple[str, inspect.Signature]]:
    """(name, signature) of each method gankit calls on a plugin of ``base``: those the interfaces define."""
    for klass in base.__mro__:
        if klass.__module__ != "gankit.interfaces":
            continue
        for name, value in vars(klass).items():
            if inspect.isfunction(value) and (name == "__init__" or not name.startswith("_")):
                yield name, inspect.signature(value)


def _signature_problem(cls: type, base: type) -> str | None:
    seen: set[str] = set()
    for name, expected in _called_methods(base):
        if name in seen:
            continue
        seen.add(name)
        static = inspect.getattr_static(cls, name)
        if static is inspect.getattr_static(base, name) or not callable(getattr(cls, name)):
            continue
        method = getattr(cls, name)
        try:
            signature = inspect.signature(method)
        except (TypeError, ValueError):
            continue  # a builtin or a wrapper without one: nothing to compare
        params = list(expected.parameters.values())[1:]  # after self
        positional = [p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD]
        keywords = [p.name for p in params if p.kind is p.KEYWORD_ONLY]
        arguments = [object()] * len(positional)
        if not isinstance(static, (staticmethod, classmethod)):
            arguments.insert(0, object())  # self
        try:
            signature.bind(*arguments, **dict.fromkeys(keywords, object()))
        except TypeError:
            call = ", ".join([*positional, *(f"{keyword}=..." for keyword in keywords)])
            return (
                f"defines {name}{_plain_signature(signature)}, but gankit calls it as {name}({call}); take the "
                f"arguments of gankit.interfaces.{base.__qualname__}.{name}"
            )
    return None


def _plain_signature(signature: inspect.Signature) -> str:
    """``(self, inputs, step)``: the parameters without their annotations."""
    return str(signature.replace(parameters=[p.replace(annotation=p.empty) for p in signature.parameters.values()],
                                 return_annotation=inspect.Signature.empty))  # fmt: skip


def _recommendation_problem(recommended: object) -> str | None:
    """A plugin's ``recommended_training`` names only settings a recipe has (its values are checked when a run
    uses them, by the training configuration)."""
    if not isinstance(recommended, Mapping):
        return f"has recommended_training of type {type(recommended).__name__}; make it a dict of training settings"
    unknown = sorted(str(key) for key in recommended if key not in RECOMMENDABLE_SETTINGS)
    if unknown:
        return (
            f"recommends {', '.join(unknown)} in recommended_training, which a plugin may not set; use only "
            f"{', '.join(sorted(RECOMMENDABLE_SETTINGS))}"
        )
    return None


def _declaration_problem(cls: type) -> str | None:
    recommendation = _recommendation_problem(getattr(cls, "recommended_training", {}))
    if recommendation is not None or not issubclass(cls, Loss):
        return recommendation
    names = inspect.getattr_static(cls, "metric_names", ())
    if isinstance(names, str):
        return f'has metric_names = {names!r}, a string, not a tuple of names; write ("{names}",), with the comma'
    if getattr(cls, "api_version", 2) < 2:
        used = [
            feature
            for feature in API_2_LOSS_FEATURES
            if inspect.getattr_static(cls, feature, None) is not inspect.getattr_static(Loss, feature)
            and (feature not in ("generator_needs_real_logits", "metric_names") or getattr(cls, feature))
        ]
        if used:
            return f"declares api_version = 1 but uses {', '.join(used)}, which plugin API 2 added; set api_version = 2"
    return None
