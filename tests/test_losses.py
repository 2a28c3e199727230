"""The BCE losses against hand-computed values, their stability, and why the non-saturating loss exists."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from gankit.errors import ConfigError
from gankit.interfaces import Discriminator, DiscriminatorInputs, DiscriminatorOptions, GeneratorInputs, Loss
from gankit.registry import create_plugin

LOSSES = ["nonsat", "minimax"]


def softplus(x: float) -> float:
    """log(1 + e^x), written out so the expected values do not come from the code under test."""
    return math.log(1 + math.exp(x))


class _NullDiscriminator(Discriminator):
    """Stands in for ``inputs.discriminator``; the BCE losses never call it."""

    def forward(self, images: Tensor, labels: Tensor | None = None) -> Tensor:
        raise AssertionError("the BCE losses should not evaluate the discriminator")


DISC = _NullDiscriminator(DiscriminatorOptions())


def d_inputs(real: Tensor, fake: Tensor) -> DiscriminatorInputs:
    images = torch.zeros(real.shape[0], 1, 2, 2)
    return DiscriminatorInputs(
        real_images=images,
        fake_images=images,
        real_logits=real,
        fake_logits=fake,
        labels=None,
        discriminator=DISC,
        step=0,
    )


def g_inputs(fake: Tensor) -> GeneratorInputs:
    images = torch.zeros(fake.shape[0], 1, 2, 2)
    return GeneratorInputs(
        real_images=images, fake_images=images, fake_logits=fake, labels=None, discriminator=DISC, step=0
    )


def loss(name: str, **options: float) -> Loss:
    built = create_plugin("loss", name, options)
    assert isinstance(built, Loss)
    return built


REAL = [0.0, 2.0, -1.0]
FAKE = [1.0, -3.0, 0.5]


@pytest.mark.parametrize("name", LOSSES)
def test_discriminator_loss_by_hand(name: str) -> None:
    # -log sigmoid(r) = log(1 + e^-r) on the reals, -log(1 - sigmoid(f)) = log(1 + e^f) on the fakes.
    expected = sum(softplus(-r) for r in REAL) / 3 + sum(softplus(f) for f in FAKE) / 3
    by_table = (0.69314718 + 0.12692801 + 1.31326169) / 3 + (1.31326169 + 0.04858735 + 0.97407698) / 3
    assert expected == pytest.approx(by_table, rel=1e-7)
    got = loss(name).discriminator_loss(d_inputs(torch.tensor(REAL), torch.tensor(FAKE)))
    assert got.shape == ()
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_generator_losses_by_hand() -> None:
    fake = torch.tensor(FAKE)
    nonsat = loss("nonsat").generator_loss(g_inputs(fake))
    minimax = loss("minimax").generator_loss(g_inputs(fake))
    assert nonsat.item() == pytest.approx(sum(softplus(-f) for f in FAKE) / 3, rel=1e-6)  # -log D(G(z))
    assert minimax.item() == pytest.approx(-sum(softplus(f) for f in FAKE) / 3, rel=1e-6)  # log(1 - D(G(z)))
    # Written with probabilities, for one logit: D = sigmoid(0.5).
    d = 1 / (1 + math.exp(-0.5))
    assert loss("nonsat").generator_loss(g_inputs(torch.tensor([0.5]))).item() == pytest.approx(-math.log(d))
    assert loss("minimax").generator_loss(g_inputs(torch.tensor([0.5]))).item() == pytest.approx(math.log(1 - d))


@pytest.mark.parametrize("name", LOSSES)
def test_label_smoothing_moves_only_the_real_target(name: str) -> None:
    s = 0.1
    # Real target 1 - s: -(1 - s) log sigmoid(r) - s log(1 - sigmoid(r)); the fake term is unchanged.
    real_terms = [(1 - s) * softplus(-r) + s * softplus(r) for r in REAL]
    expected = sum(real_terms) / 3 + sum(softplus(f) for f in FAKE) / 3
    smoothed = loss(name, label_smoothing=s)
    got = smoothed.discriminator_loss(d_inputs(torch.tensor(REAL), torch.tensor(FAKE)))
    assert got.item() == pytest.approx(expected, rel=1e-6)
    # The generator's objective does not see the smoothing.
    fake = torch.tensor(FAKE)
    assert smoothed.generator_loss(g_inputs(fake)).item() == loss(name).generator_loss(g_inputs(fake)).item()
    # Matches PyTorch's own BCE with a 0.9 target.
    reference = nn.functional.binary_cross_entropy_with_logits(
        torch.tensor(REAL), torch.full((3,), 0.9)
    ) + nn.functional.binary_cross_entropy_with_logits(torch.tensor(FAKE), torch.zeros(3))
    assert got.item() == pytest.approx(reference.item(), rel=1e-6)


@pytest.mark.parametrize("value", [-0.1, 0.5, 0.7])
def test_label_smoothing_is_bounded(value: float) -> None:
    with pytest.raises(ConfigError, match="label_smoothing"):
        create_plugin("loss", "nonsat", {"label_smoothing": value})


@pytest.mark.parametrize("name", LOSSES)
def test_extreme_logits_stay_finite(name: str) -> None:
    extreme = torch.tensor([100.0, -100.0, 100.0, -100.0], requires_grad=True)
    plugin = loss(name)
    d_loss = plugin.discriminator_loss(d_inputs(extreme, extreme))
    g_loss = plugin.generator_loss(g_inputs(extreme))
    for value in (d_loss, g_loss):
        assert torch.isfinite(value)
        (grad,) = torch.autograd.grad(value, extreme)
        assert torch.isfinite(grad).all()
    # A confidently wrong discriminator costs about 100 per wrong logit (softplus(100) = 100 to float precision).
    assert d_loss.item() == pytest.approx((100 + 100) / 4 + (100 + 100) / 4, rel=1e-6)


def test_minimax_saturates_when_the_discriminator_wins() -> None:
    """As D(G(z)) -> 0, log(1 - D(G(z))) goes flat while -log D(G(z)) keeps pushing: Goodfellow et al.'s fix."""
    n = 4
    fake = torch.full((n,), -20.0, requires_grad=True)  # D(G(z)) = sigmoid(-20), about 2e-9
    (minimax_grad,) = torch.autograd.grad(loss("minimax").generator_loss(g_inputs(fake)), fake)
    (nonsat_grad,) = torch.autograd.grad(loss("nonsat").generator_loss(g_inputs(fake)), fake)
    assert minimax_grad.abs().max() < 1e-6
    assert nonsat_grad.tolist() == pytest.approx([-1.0 / n] * n, rel=1e-6)  # d/dx softplus(-x) / n = -sigmoid(-x) / n


@pytest.mark.parametrize("name", LOSSES)
def test_losses_are_float32_under_autocast(name: str) -> None:
    torch.manual_seed(0)
    layer = nn.Linear(8, 1)
    real_x, fake_x = torch.randn(4, 8), torch.randn(4, 8)
    plugin = loss(name, label_smoothing=0.1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        real, fake = layer(real_x).squeeze(1), layer(fake_x).squeeze(1)
        assert real.dtype == torch.bfloat16
        d_loss = plugin.discriminator_loss(d_inputs(real, fake))
        g_loss = plugin.generator_loss(g_inputs(fake))
    for value in (d_loss, g_loss):
        assert value.dtype == torch.float32
        assert torch.isfinite(value)
    d_loss.backward()
    assert torch.isfinite(layer.weight.grad).all()


def test_loss_options_are_described() -> None:
    cls = type(loss("nonsat"))
    field = cls.Options.model_fields["label_smoothing"]
    assert field.default == 0
    assert field.description == "one-sided label smoothing: real targets become 1 - value (Salimans et al. 2016)"
    assert type(loss("minimax")).Options is cls.Options
