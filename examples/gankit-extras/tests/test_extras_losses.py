"""The three losses: their values on known logits, the gradient penalty's closed form, and bf16 autocast on CPU."""

from __future__ import annotations

import pytest
import torch
from gankit.errors import ConfigError
from gankit.interfaces import Discriminator, DiscriminatorInputs, DiscriminatorOptions, GeneratorInputs
from gankit.registry import create_plugin, registry
from torch import Tensor, nn

from gankit_extras.losses import HingeLoss, LeastSquaresLoss, WassersteinGPLoss

SHAPE = (1, 4, 4)


class LinearCritic(Discriminator):
    """D(x) = <w, x>: the gradient with respect to any image is w, so the penalty is ``(||w|| - 1)^2`` exactly."""

    def __init__(self, weight: Tensor) -> None:
        super().__init__(DiscriminatorOptions(image_size=SHAPE[1], channels=SHAPE[0]))
        self.weight = nn.Parameter(weight.flatten().clone())

    def forward(self, images: Tensor, labels: Tensor | None = None) -> Tensor:
        return images.flatten(1) @ self.weight


def critic(scale: float) -> LinearCritic:
    weight = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1))
    return LinearCritic(scale * weight / weight.norm())


def d_inputs(
    real_logits: Tensor, fake_logits: Tensor, discriminator: Discriminator | None = None
) -> DiscriminatorInputs:
    images = torch.rand(len(real_logits), *SHAPE, generator=torch.Generator().manual_seed(0)) * 2 - 1
    return DiscriminatorInputs(
        real_images=images,
        fake_images=-images,
        real_logits=real_logits,
        fake_logits=fake_logits,
        labels=None,
        discriminator=discriminator or critic(1.0),
        step=0,
    )


def g_inputs(fake_logits: Tensor) -> GeneratorInputs:
    images = torch.zeros(len(fake_logits), *SHAPE)
    return GeneratorInputs(
        real_images=images,
        fake_images=images,
        fake_logits=fake_logits,
        labels=None,
        discriminator=critic(1.0),
        step=0,
    )


REAL = torch.tensor([2.0, 0.5, -1.0])
FAKE = torch.tensor([-2.0, 0.0, 1.5])


@pytest.mark.parametrize("name", ["hinge", "wgan-gp", "lsgan"])
def test_found_through_the_registry_with_this_distribution(name: str) -> None:
    assert registry.entry("loss", name).distribution == "gankit-extras"
    assert create_plugin("loss", name).discriminator_loss is not None


def test_hinge_values() -> None:
    loss = HingeLoss(HingeLoss.Options())
    # relu(1 - real) = [0, 0.5, 2], relu(1 + fake) = [0, 1, 2.5]
    assert loss.discriminator_loss(d_inputs(REAL, FAKE)).item() == pytest.approx(2.5 / 3 + 3.5 / 3)
    assert loss.generator_loss(g_inputs(FAKE)).item() == pytest.approx(0.5 / 3)  # -mean(fake)


def test_least_squares_values() -> None:
    loss = LeastSquaresLoss(LeastSquaresLoss.Options())
    expected_d = 0.5 * ((REAL - 1) ** 2).mean() + 0.5 * (FAKE**2).mean()
    assert loss.discriminator_loss(d_inputs(REAL, FAKE)).item() == pytest.approx(expected_d.item())
    assert loss.generator_loss(g_inputs(FAKE)).item() == pytest.approx((0.5 * (FAKE - 1) ** 2).mean().item())


@pytest.mark.parametrize("scale", [1.0, 3.0])
def test_gradient_penalty_closed_form(scale: float) -> None:
    loss = WassersteinGPLoss(WassersteinGPLoss.Options(gp_weight=2.0))
    inputs = d_inputs(REAL, FAKE, critic(scale))
    assert loss.gradient_penalty(inputs).item() == pytest.approx((scale - 1) ** 2, abs=1e-5)
    wasserstein = FAKE.mean() - REAL.mean()
    expected = wasserstein + 2.0 * (scale - 1) ** 2
    assert loss.discriminator_loss(inputs).item() == pytest.approx(expected.item(), abs=1e-5)
    assert inputs.metrics["gradient_penalty"].item() == pytest.approx((scale - 1) ** 2, abs=1e-5)  # reported


def test_gradient_penalty_is_float32_under_cpu_bf16_autocast_and_reaches_the_critic() -> None:
    model = critic(3.0)
    images = torch.rand(4, *SHAPE, generator=torch.Generator().manual_seed(2))
    loss = WassersteinGPLoss(WassersteinGPLoss.Options())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        # what the engine does: logits under autocast, the loss computed inside the same context
        real_logits, fake_logits = model(images.bfloat16()), model(-images.bfloat16())
        inputs = DiscriminatorInputs(
            real_images=images.bfloat16(),
            fake_images=-images.bfloat16(),
            real_logits=real_logits,
            fake_logits=fake_logits,
            labels=None,
            discriminator=model,
            step=0,
        )
        penalty = loss.gradient_penalty(inputs)
        total = loss.discriminator_loss(inputs)
    assert penalty.dtype == torch.float32 and total.dtype == torch.float32
    assert penalty.item() == pytest.approx(4.0, abs=1e-4)  # exact in float32, not bf16's three digits
    total.backward()
    assert model.weight.grad is not None and torch.isfinite(model.weight.grad).all()
    assert model.weight.grad.abs().sum() > 0


def test_options_are_bounded() -> None:
    assert create_plugin("loss", "wgan-gp").options.gp_weight == 10
    with pytest.raises(ConfigError, match="gp_weight"):
        create_plugin("loss", "wgan-gp", {"gp_weight": -1})
    with pytest.raises(ConfigError, match="margin"):
        create_plugin("loss", "hinge", {"margin": 0})


def test_wgan_gp_with_the_resnet_critic_under_bf16_autocast() -> None:
    """The combination the README recommends, on CPU bf16: spectral norm and BatchNorm-free critic, double backward."""
    torch.manual_seed(0)
    critic_net = create_plugin("discriminator", "resnet", {"width": 4})
    loss = create_plugin("loss", "wgan-gp")
    real, fake = torch.rand(2, 1, 28, 28) * 2 - 1, torch.rand(2, 1, 28, 28) * 2 - 1
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inputs = DiscriminatorInputs(
            real_images=real,
            fake_images=fake,
            real_logits=critic_net(real),
            fake_logits=critic_net(fake),
            labels=None,
            discriminator=critic_net,
            step=0,
        )
        total = loss.discriminator_loss(inputs)
    assert total.dtype == torch.float32 and torch.isfinite(total)
    total.backward()
    grads = [p.grad for p in critic_net.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
