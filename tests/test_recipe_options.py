"""The recipe-search options of the built-in DCGAN and BCE plugins: each changes what it says and nothing else."""

from __future__ import annotations

import json
import runpy
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from gankit.export import load_generator, save_generator
from gankit.interfaces import Discriminator, DiscriminatorInputs, DiscriminatorOptions
from gankit.registry import create_plugin
from gankit.run import build_config, train

SIZES = [28, 32, 64]
READER = Path(__file__).resolve().parents[1] / "examples" / "standalone_reader.py"
D_OPTIONS = [{"norm": "spectral"}, {"norm": "none"}, {"slope": 0.1}, {"dropout": 0.2}]


def fake_config(tmp_path: Path, **overrides: Any) -> Any:
    """A 4-step DCGAN run on the fake dataset, narrow enough for the CPU."""
    values: dict[str, Any] = {
        "generator": "dcgan",
        "loss": "nonsat",
        "dataset": "fake",
        "dataset_options": {"size": 64},
        "generator_options": {"width": 8},
        "discriminator_options": {"width": 8},
        "batch_size": 16,
        "max_steps": 4,
        "device": "cpu",
        "log_every": 1,
        "sample_count": 4,
        "out": tmp_path / "run",
    }
    values.update(overrides)
    return build_config(values)


def discriminator(seed: int = 0, **options: Any) -> nn.Module:
    torch.manual_seed(seed)
    return create_plugin("discriminator", "dcgan", {"width": 8, **options})


def generator(seed: int = 0, **options: Any) -> nn.Module:
    torch.manual_seed(seed)
    return create_plugin("generator", "dcgan", {"width": 8, **options})


def modules_of(model: nn.Module, kind: type[nn.Module]) -> list[nn.Module]:
    return [module for module in model.modules() if isinstance(module, kind)]


# -- shapes -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("options", D_OPTIONS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_discriminator_options_keep_the_shapes(size: int, options: dict[str, Any]) -> None:
    disc = discriminator(image_size=size, channels=3, **options)
    logits = disc(torch.rand(5, 3, size, size) * 2 - 1)
    assert logits.shape == (5,) and torch.isfinite(logits).all()


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("num_classes", [0, 10])
def test_resize_generator_keeps_the_shapes_and_differs_from_transposed(size: int, num_classes: int) -> None:
    options = {"image_size": size, "channels": 3, "num_classes": num_classes}
    resize, transposed = generator(upsample="resize", **options), generator(**options)
    latent = torch.randn(5, resize.latent_dim)
    labels = torch.arange(5) if num_classes else None
    images = resize.eval()(latent, labels)
    reference = transposed.eval()(latent, labels)
    assert images.shape == reference.shape == (5, 3, size, size)
    assert images.min() >= -1 and images.max() <= 1
    assert not torch.allclose(images, reference)
    # Every doubling is an upsampling then a 3x3 convolution; only the first layer (z -> the smallest map) transposes.
    assert len(modules_of(resize, nn.ConvTranspose2d)) == 1
    ups = modules_of(resize, nn.Upsample)
    assert len(ups) == len(modules_of(transposed, nn.ConvTranspose2d)) - 1
    assert all(up.scale_factor == 2 and up.mode == "nearest" for up in ups)  # type: ignore[union-attr]
    assert all(conv.kernel_size == (3, 3) and conv.padding == (1, 1) for conv in modules_of(resize, nn.Conv2d))


def test_defaults_are_the_dcgan_layers() -> None:
    disc, gen = discriminator(), generator()
    assert len(modules_of(disc, nn.BatchNorm2d)) == 1 and not modules_of(disc, nn.Dropout2d)
    assert {m.negative_slope for m in modules_of(disc, nn.LeakyReLU)} == {0.2}  # type: ignore[attr-defined]
    assert not modules_of(gen, nn.Upsample) and len(modules_of(gen, nn.ConvTranspose2d)) == 3
    assert all(conv.bias is None for conv in modules_of(disc, nn.Conv2d))


# -- the discriminator's normalisation, slope and dropout ---------------------------------------------------------


def spectral_norms(model: nn.Module) -> list[float]:
    """The largest singular value of each convolution's weight as a matrix ``(out, in * k * k)``."""
    return [torch.linalg.matrix_norm(conv.weight.flatten(1), ord=2).item() for conv in modules_of(model, nn.Conv2d)]


@pytest.mark.parametrize("size", SIZES)
def test_spectral_norm_replaces_batch_norm_and_constrains_every_convolution(size: int) -> None:
    disc = discriminator(image_size=size, norm="spectral")
    assert not modules_of(disc, nn.BatchNorm2d)
    convs = modules_of(disc, nn.Conv2d)
    assert convs and all(torch.nn.utils.parametrize.is_parametrized(conv, "weight") for conv in convs)
    disc.train()
    for _ in range(5):  # each training forward runs one more power iteration
        disc(torch.rand(4, 1, size, size) * 2 - 1)
    disc.eval()
    assert spectral_norms(disc) == pytest.approx([1.0] * len(convs), abs=0.02)
    # DCGAN's N(0, 0.02) weights are far from norm 1 without it.
    plain = discriminator(image_size=size, norm="none")
    assert all(abs(sigma - 1) > 0.1 for sigma in spectral_norms(plain))


def test_no_norm_drops_batch_norm_and_gives_the_hidden_convolutions_a_bias() -> None:
    disc = discriminator(image_size=64, norm="none")
    assert not modules_of(disc, nn.BatchNorm2d)
    assert not any(torch.nn.utils.parametrize.is_parametrized(conv) for conv in modules_of(disc, nn.Conv2d))
    convs = modules_of(disc.features, nn.Conv2d)
    assert convs[0].bias is None and all(conv.bias is not None for conv in convs[1:])
    assert disc.head.bias is None
    x = torch.rand(4, 1, 64, 64) * 2 - 1
    assert not torch.allclose(disc.train()(x), discriminator(image_size=64).train()(x))


def test_slope_sets_every_leaky_relu_and_changes_the_logits() -> None:
    gentle, default = discriminator(slope=0.1), discriminator()
    assert {m.negative_slope for m in modules_of(gentle, nn.LeakyReLU)} == {0.1}  # type: ignore[attr-defined]
    # The same weights (the slope draws no random numbers), other logits.
    weights, reference = gentle.state_dict(), default.state_dict()
    assert weights.keys() == reference.keys() and all(torch.equal(weights[k], reference[k]) for k in weights)
    x = torch.rand(4, 1, 28, 28) * 2 - 1
    assert not torch.allclose(gentle.eval()(x), default.eval()(x))


def test_dropout_acts_in_training_only() -> None:
    dropped, default = discriminator(dropout=0.2), discriminator()
    drops = modules_of(dropped, nn.Dropout2d)
    assert len(drops) == len(modules_of(dropped, nn.LeakyReLU)) and all(d.p == 0.2 for d in drops)  # type: ignore
    x = torch.rand(8, 1, 28, 28) * 2 - 1
    dropped.eval(), default.eval()
    assert torch.equal(dropped(x), default(x))  # the same weights, and dropout off
    dropped.train(), default.train()
    assert not torch.equal(dropped(x), dropped(x))  # a fresh mask each forward
    assert torch.equal(default(x), default(x))


def test_options_are_validated() -> None:
    for bad in ({"norm": "layer"}, {"slope": -0.1}, {"slope": 1.0}, {"dropout": 0.9}, {"dropout": -0.1}):
        with pytest.raises(Exception, match="|".join(bad)):
            create_plugin("discriminator", "dcgan", bad)
    with pytest.raises(Exception, match="upsample"):
        create_plugin("generator", "dcgan", {"upsample": "bilinear"})
    for bad in ({"r1_gamma": -1.0}, {"r1_interval": 0}):
        with pytest.raises(Exception, match="|".join(bad)):
            create_plugin("loss", "nonsat", bad)


# -- R1 --------------------------------------------------------------------------------------------------------------


class _Constant(Discriminator):
    """A discriminator whose logits do not depend on the images: its input gradient is 0."""

    def __init__(self) -> None:
        super().__init__(DiscriminatorOptions())
        self.bias = nn.Parameter(torch.tensor(0.3))

    def forward(self, images: Tensor, labels: Tensor | None = None) -> Tensor:
        return images.flatten(1).sum(dim=1) * 0 + self.bias


def regularizer_inputs(disc: nn.Module, step: int = 0, autocast: bool = False) -> DiscriminatorInputs:
    """What the engine hands the loss on a regularising update: real images that require grad, and their logits."""
    torch.manual_seed(1)
    real = (torch.rand(6, 1, 28, 28) * 2 - 1).requires_grad_(True)
    fake = torch.rand(6, 1, 28, 28) * 2 - 1
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        real_logits, fake_logits = disc(real), disc(fake)
    return DiscriminatorInputs(
        step=step,
        real_images=real,
        fake_images=fake,
        real_logits=real_logits,
        fake_logits=fake_logits,
        labels=None,
        discriminator=disc,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("loss_name", ["nonsat", "minimax"])
def test_r1_is_half_gamma_times_the_squared_input_gradient(loss_name: str) -> None:
    loss = create_plugin("loss", loss_name, {"r1_gamma": 4.0, "r1_interval": 8})
    assert loss.regularization_interval == 8
    disc = discriminator(norm="none")
    inputs = regularizer_inputs(disc)
    term = loss.discriminator_regularizer(inputs)
    assert term.ndim == 0 and term.item() > 0
    (grad,) = torch.autograd.grad(inputs.real_logits.sum(), inputs.real_images, retain_graph=True)
    expected = grad.flatten(1).pow(2).sum(dim=1).mean()
    assert term.item() == pytest.approx(2.0 * expected.item(), rel=1e-5)
    assert inputs.metrics["r1_penalty"].item() == pytest.approx(expected.item(), rel=1e-5)
    term.backward()  # the penalty's gradient reaches D's weights
    assert all(p.grad is not None for p in disc.parameters())
    assert any(p.grad.abs().sum() > 0 for p in disc.parameters() if p.grad is not None)


def test_r1_is_zero_for_a_discriminator_blind_to_its_input() -> None:
    loss = create_plugin("loss", "nonsat", {"r1_gamma": 10.0})
    assert loss.discriminator_regularizer(regularizer_inputs(_Constant())).item() == 0.0


def test_r1_off_is_no_regulariser_at_all() -> None:
    """With gamma 0 the engine never calls the regulariser, so real images need no gradient and the logged metrics
    (and the statistics summed each step) are exactly what they were before R1 existed."""
    loss = create_plugin("loss", "nonsat")
    assert loss.options.r1_gamma == 0 and loss.regularization_interval == 16
    assert not loss.uses_regularizer and loss.metric_names == ("d_real", "d_fake")
    on = create_plugin("loss", "nonsat", {"r1_gamma": 1.0})
    assert on.uses_regularizer and on.metric_names == ("d_real", "d_fake", "r1_penalty")


def test_r1_under_autocast_runs_in_float32() -> None:
    """With bf16 logits the penalty comes from a float32 forward, so it matches the float32 one closely."""
    loss = create_plugin("loss", "nonsat", {"r1_gamma": 2.0})
    disc = discriminator(norm="spectral").eval()
    amp = regularizer_inputs(disc, autocast=True)
    assert amp.real_logits.dtype == torch.bfloat16
    full = regularizer_inputs(disc)
    amp_term, full_term = loss.discriminator_regularizer(amp), loss.discriminator_regularizer(full)
    assert amp_term.dtype == torch.float32
    assert amp_term.item() == pytest.approx(full_term.item(), rel=1e-4)


# -- training with each option ---------------------------------------------------------------------------------------


RUNS = {
    "gen-upsample-resize": {"generator_options": {"width": 8, "upsample": "resize"}},
    "disc-norm-spectral": {"discriminator_options": {"width": 8, "norm": "spectral"}},
    "disc-norm-none": {"discriminator_options": {"width": 8, "norm": "none"}},
    "disc-slope": {"discriminator_options": {"width": 8, "slope": 0.1}},
    "disc-dropout": {"discriminator_options": {"width": 8, "dropout": 0.2}},
    "r1-nonsat": {"loss_options": {"r1_gamma": 1.0, "r1_interval": 2}},
    "r1-minimax": {"loss": "minimax", "loss_options": {"r1_gamma": 10.0, "r1_interval": 3}},
}


@pytest.mark.parametrize("name", RUNS)
def test_training_with_each_option(name: str, tmp_path: Path) -> None:
    result = train(fake_config(tmp_path, **RUNS[name]))
    assert result.steps == 4
    lines = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [line for line in lines if "d_loss" in line]
    assert steps and all(torch.isfinite(torch.tensor([line["d_loss"], line["g_loss"]])).all() for line in steps)
    interval = RUNS[name].get("loss_options", {}).get("r1_interval")
    if interval:  # the penalty is reported on the regularising steps only (log_every=1: one line a step)
        reported = [line["step"] for line in steps if "r1_penalty" in line]
        assert reported and all(line["r1_penalty"] >= 0 for line in steps if "r1_penalty" in line)
        assert len(reported) < len(steps)
    else:
        assert not any("r1_penalty" in line for line in steps)
    # The export records the options, so gankit rebuilds the same network from it.
    loaded = load_generator(result.export_path)
    for key, value in RUNS[name].get("generator_options", {}).items():
        assert getattr(loaded.options, key) == value
    assert loaded(torch.randn(3, loaded.latent_dim)).shape == (3, 1, 28, 28)


def test_resize_export_reloads_through_gankit_but_not_the_standalone_reader(tmp_path: Path) -> None:
    gen = generator(upsample="resize", image_size=32)
    path = tmp_path / "resize.safetensors"
    save_generator(gen, path, plugin_name="dcgan")
    loaded = load_generator(path)
    assert loaded.options.upsample == "resize"
    latent = torch.randn(3, gen.latent_dim)
    assert torch.equal(loaded(latent), gen.eval()(latent))
    # The standalone reader builds the default (transposed) layers; it refuses the file instead of misreading it.
    reader = runpy.run_path(str(READER))
    with pytest.raises(RuntimeError, match="state_dict"):
        reader["load"](path)
