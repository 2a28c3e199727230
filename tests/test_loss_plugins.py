"""Losses that need gradients of the discriminator (WGAN-GP, R1) fit the Loss contract and load as plugins."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F
from plugins_for_tests import R1NonSat, WassersteinGP
from torch import Tensor, nn

from gankit.errors import ConfigError
from gankit.interfaces import Discriminator, DiscriminatorInputs, DiscriminatorOptions, GeneratorInputs
from gankit.registry import create_plugin, get_plugin, registry

SHAPE = (1, 4, 4)
N = 6


class LinearCritic(Discriminator):
    """D(x) = <w, x>: its gradient with respect to every image is w, so the penalties have closed forms."""

    def __init__(self, weight: Tensor) -> None:
        super().__init__(DiscriminatorOptions(image_size=SHAPE[1], channels=SHAPE[0]))
        self.weight = nn.Parameter(weight.flatten().clone())

    def forward(self, images: Tensor, labels: Tensor | None = None) -> Tensor:
        return images.flatten(1) @ self.weight


@pytest.fixture(autouse=True)
def registered_test_losses() -> Iterator[None]:
    registry.register("loss", "wgan-gp-test", WassersteinGP)
    registry.register("loss", "r1-test", R1NonSat)
    try:
        yield
    finally:
        registry.unregister("loss", "wgan-gp-test")
        registry.unregister("loss", "r1-test")


@pytest.fixture
def images() -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.rand(N, *SHAPE, generator=generator) * 2 - 1, torch.rand(N, *SHAPE, generator=generator) * 2 - 1


def unit_weight(scale: float = 1.0) -> Tensor:
    weight = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1))
    return scale * weight / weight.norm()


def d_inputs(critic: Discriminator, real: Tensor, fake: Tensor) -> DiscriminatorInputs:
    return DiscriminatorInputs(
        real_images=real,
        fake_images=fake,
        real_logits=critic(real),
        fake_logits=critic(fake),
        labels=None,
        discriminator=critic,
        step=0,
    )


def test_registered_losses_build_through_the_registry() -> None:
    wgan = create_plugin("loss", "wgan-gp-test", {"gp_weight": 5})
    assert isinstance(wgan, WassersteinGP)
    assert wgan.options.gp_weight == 5
    assert create_plugin("loss", "wgan-gp-test").options.gp_weight == 10
    r1 = create_plugin("loss", "r1-test", {"gamma": 1})
    assert isinstance(r1, R1NonSat)
    assert get_plugin("loss", "r1-test").requires_real_grad
    assert not get_plugin("loss", "wgan-gp-test").requires_real_grad
    with pytest.raises(ConfigError, match="gp_weight"):
        create_plugin("loss", "wgan-gp-test", {"gp_weight": -1})
    with pytest.raises(ConfigError, match="gamma"):
        create_plugin("loss", "r1-test", {"gamma": -1})
    with pytest.raises(ConfigError, match="lambda"):
        create_plugin("loss", "r1-test", {"lambda": 1})


def test_gradient_penalty_vanishes_for_a_unit_gradient_critic(images: tuple[Tensor, Tensor]) -> None:
    critic = LinearCritic(unit_weight())
    inputs = d_inputs(critic, *images)
    wgan = create_plugin("loss", "wgan-gp-test")
    assert wgan.gradient_penalty(inputs).item() == pytest.approx(0.0, abs=1e-10)
    wasserstein = inputs.fake_logits.mean() - inputs.real_logits.mean()
    assert wgan.discriminator_loss(inputs).item() == pytest.approx(wasserstein.item(), abs=1e-6)


def test_gradient_penalty_is_positive_otherwise(images: tuple[Tensor, Tensor]) -> None:
    # ||grad|| = 3 everywhere: the penalty is exactly (3 - 1)^2 = 4, weighted by gp_weight.
    critic = LinearCritic(unit_weight(3.0))
    inputs = d_inputs(critic, *images)
    wgan = create_plugin("loss", "wgan-gp-test", {"gp_weight": 2.5})
    wasserstein = inputs.fake_logits.mean() - inputs.real_logits.mean()
    assert (wgan.discriminator_loss(inputs) - wasserstein).item() == pytest.approx(2.5 * 4.0, rel=1e-5)

    # A real (tiny MLP) discriminator: positive penalty, and the double backward reaches its weights.
    torch.manual_seed(0)
    mlp = create_plugin("discriminator", "mlp", {"image_size": SHAPE[1], "channels": SHAPE[0], "hidden": 4})
    inputs = d_inputs(mlp, *images)
    penalty = wgan.gradient_penalty(inputs)
    assert penalty.item() > 0
    wgan.discriminator_loss(inputs).backward()
    first = mlp.features[0][0].weight.grad
    assert first is not None
    assert torch.isfinite(first).all()
    assert first.abs().sum() > 0


def test_wasserstein_generator_loss(images: tuple[Tensor, Tensor]) -> None:
    fake_logits = torch.tensor([1.0, -2.0, 4.0])
    inputs = GeneratorInputs(
        real_images=images[0],
        fake_images=images[1],
        fake_logits=fake_logits,
        labels=None,
        discriminator=LinearCritic(unit_weight()),
        step=0,
    )
    assert create_plugin("loss", "wgan-gp-test").generator_loss(inputs).item() == pytest.approx(-1.0)


@pytest.mark.parametrize("gamma", [10.0, 0.5])
def test_r1_is_half_gamma_times_the_squared_weight_norm(images: tuple[Tensor, Tensor], gamma: float) -> None:
    weight = unit_weight(2.0)
    critic = LinearCritic(weight)
    real, fake = images
    inputs = d_inputs(critic, real.requires_grad_(True), fake)  # as the engine does when requires_real_grad
    r1 = create_plugin("loss", "r1-test", {"gamma": gamma})
    nonsat = F.softplus(-inputs.real_logits).mean() + F.softplus(inputs.fake_logits).mean()
    expected = gamma / 2 * weight.pow(2).sum()  # = gamma / 2 * 4
    loss = r1.discriminator_loss(inputs)
    assert (loss - nonsat).item() == pytest.approx(expected.item(), rel=1e-5)
    loss.backward()
    assert torch.isfinite(critic.weight.grad).all()


def test_r1_needs_real_images_that_require_grad(images: tuple[Tensor, Tensor]) -> None:
    critic = LinearCritic(unit_weight())
    with pytest.raises(ValueError, match="requires_real_grad"):
        create_plugin("loss", "r1-test").discriminator_loss(d_inputs(critic, *images))
