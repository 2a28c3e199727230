"""GeneratorEMA: StyleGAN's schedule, exact averaging, copied buffers and a checkpointable state."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gankit.registry import create_plugin
from gankit.run import GeneratorEMA


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 3)
        self.norm = nn.BatchNorm1d(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.linear(x))  # type: ignore[no-any-return]


def fill(model: nn.Module, value: float) -> None:
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.fill_(value)


def test_beta_follows_the_half_life_with_ramp_up() -> None:
    ema = GeneratorEMA(Tiny(), ema_kimg=10, ema_rampup=0.05)
    assert ema.beta(step=0, batch_size=64) == 0.0  # nothing seen yet: copy the model
    assert ema.half_life(step=100, batch_size=64) == pytest.approx(320.0)  # 6,400 images x 0.05
    assert ema.beta(step=100, batch_size=64) == pytest.approx(0.5 ** (64 / 320))
    assert ema.half_life(step=10**6, batch_size=64) == 10_000  # capped at ema_kimg
    assert ema.beta(step=10**6, batch_size=64) == pytest.approx(0.5 ** (64 / 10_000))
    assert GeneratorEMA(Tiny(), ema_rampup=None).beta(step=1, batch_size=64) == pytest.approx(0.5 ** (64 / 10_000))


def test_beta_zero_makes_the_average_equal_the_generator() -> None:
    generator = Tiny()
    ema = GeneratorEMA(generator, ema_kimg=0)
    fill(generator, 0.123)
    assert ema.update(generator, step=5, batch_size=8) == 0.0
    for averaged, current in zip(ema.generator.state_dict().values(), generator.state_dict().values(), strict=True):
        assert torch.equal(averaged, current)


def test_the_average_converges_to_a_constant_generator_at_the_expected_rate() -> None:
    generator = Tiny()
    fill(generator, 1.0)
    ema = GeneratorEMA(generator, ema_kimg=0.1, ema_rampup=None)  # half-life of 100 images
    fill(generator, 3.0)  # the generator now stays constant
    remaining = 1.0
    for step in range(1, 201):
        remaining *= ema.update(generator, step=step, batch_size=10)
    for parameter in ema.generator.parameters():
        torch.testing.assert_close(parameter, torch.full_like(parameter, 3.0 - 2.0 * remaining))
    assert remaining == pytest.approx(0.5**20)  # 2,000 images are 20 half-lives


def test_buffers_are_copied_not_averaged_and_the_copy_stays_frozen() -> None:
    generator = Tiny()
    ema = GeneratorEMA(generator)
    generator.train()
    generator(torch.randn(16, 4) * 5 + 2)  # moves the batch norm running statistics
    ema.update(generator, step=10**6, batch_size=1)
    assert torch.equal(ema.generator.norm.running_mean, generator.norm.running_mean)
    assert torch.equal(ema.generator.norm.num_batches_tracked, generator.norm.num_batches_tracked)
    assert not ema.generator.training
    assert not any(parameter.requires_grad for parameter in ema.generator.parameters())
    assert all(parameter.requires_grad for parameter in generator.parameters())


def test_state_dict_round_trip() -> None:
    generator = Tiny()
    ema = GeneratorEMA(generator)
    fill(generator, 0.5)
    ema.update(generator, step=3, batch_size=4)
    restored = GeneratorEMA(Tiny())
    restored.load_state_dict(ema.state_dict())
    for key, value in ema.state_dict().items():
        assert torch.equal(restored.state_dict()[key], value)


def test_a_different_model_is_refused() -> None:
    ema = GeneratorEMA(Tiny())
    with pytest.raises(ValueError, match="parameters"):
        ema.update(nn.Linear(4, 3), step=1, batch_size=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ema_kimg"):
        GeneratorEMA(Tiny(), ema_kimg=-1)


def test_works_with_a_built_in_generator() -> None:
    generator = create_plugin("generator", "dcgan", {"width": 8})
    ema = GeneratorEMA(generator)
    latent = torch.randn(2, generator.latent_dim)
    ema.generator.eval()
    generator.eval()
    with torch.no_grad():
        torch.testing.assert_close(ema.generator(latent), generator(latent))
    assert ema.generator.image_shape == generator.image_shape
