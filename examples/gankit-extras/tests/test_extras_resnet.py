"""The ResNet pair: shapes at every supported size, spectral normalisation in D, conditioning, option checks."""

from __future__ import annotations

import pytest
import torch
from gankit.errors import ConfigError
from gankit.interfaces import Discriminator, Generator
from gankit.registry import create_plugin, registry
from torch.nn.utils import parametrize


@pytest.fixture(autouse=True)
def one_thread() -> None:
    torch.set_num_threads(1)  # tiny models: threads only add overhead, and CI machines are shared


@pytest.mark.parametrize("size", [28, 32, 64])
def test_shapes_at_every_size(size: int) -> None:
    generator = create_plugin("generator", "resnet", {"image_size": size, "width": 8, "latent_dim": 16})
    discriminator = create_plugin("discriminator", "resnet", {"image_size": size, "width": 8})
    assert isinstance(generator, Generator) and isinstance(discriminator, Discriminator)
    images = generator(generator.sample_latent(3))
    assert images.shape == (3, 1, size, size)
    assert images.min() >= -1 and images.max() <= 1
    assert discriminator(images).shape == (3,)


def test_discriminator_is_spectrally_normalised_unless_asked_not_to() -> None:
    normalised = create_plugin("discriminator", "resnet", {"width": 8})
    plain = create_plugin("discriminator", "resnet", {"width": 8, "spectral_norm": False})
    weighted = [m for m in normalised.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)]
    assert weighted and all(parametrize.is_parametrized(m, "weight") for m in weighted)
    assert not any(parametrize.is_parametrized(m) for m in plain.modules())
    # spectral normalisation does not change the parameter count, only how the weights are used
    assert sum(p.numel() for p in normalised.parameters()) == sum(p.numel() for p in plain.parameters())


def test_conditional_pair_uses_labels() -> None:
    generator = create_plugin("generator", "resnet", {"width": 8, "num_classes": 10})
    discriminator = create_plugin("discriminator", "resnet", {"width": 8, "num_classes": 10})
    generator.eval()
    latent = generator.sample_latent(2, generator=torch.Generator().manual_seed(0))
    sevens = generator(latent, torch.tensor([7, 7]))
    threes = generator(latent, torch.tensor([3, 3]))
    assert not torch.allclose(sevens, threes)
    assert discriminator(sevens, torch.tensor([7, 7])).shape == (2,)
    with pytest.raises(ValueError, match="conditional"):
        generator(latent)


def test_unsupported_size_and_width_are_refused_with_the_field_named() -> None:
    with pytest.raises(ConfigError, match="image_size"):
        create_plugin("generator", "resnet", {"image_size": 48})
    with pytest.raises(ConfigError, match="width"):
        create_plugin("discriminator", "resnet", {"width": 0})


def test_distribution() -> None:
    for kind in ("generator", "discriminator"):
        assert registry.entry(kind, "resnet").distribution == "gankit-extras"
