"""The built-in generators and discriminators, built through their real entry points."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gankit.errors import ConfigError
from gankit.interfaces import Discriminator, Generator
from gankit.registry import create_plugin, get_plugin

MODELS = ["mlp", "dcgan"]
SIZES = [28, 32, 64]
CHANNELS = [1, 3]
BATCH = 3


def small(name: str) -> dict[str, int]:
    """Narrow widths keep the shape tests fast; the architecture does not depend on them."""
    return {"hidden": 8} if name == "mlp" else {"width": 8}


def param_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.mark.parametrize("name", MODELS)
def test_entry_points_give_the_plugin_classes(name: str) -> None:
    assert issubclass(get_plugin("generator", name), Generator)
    assert issubclass(get_plugin("discriminator", name), Discriminator)


@pytest.mark.parametrize("channels", CHANNELS)
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("name", MODELS)
def test_shapes_and_ranges(name: str, size: int, channels: int) -> None:
    options = {"image_size": size, "channels": channels, **small(name)}
    gen = create_plugin("generator", name, options)
    disc = create_plugin("discriminator", name, options)
    assert gen.image_shape == (channels, size, size)

    images = gen(gen.sample_latent(BATCH))
    assert images.shape == (BATCH, channels, size, size)
    assert images.dtype == torch.float32
    assert images.min() >= -1 and images.max() <= 1

    logits = disc(images)
    assert logits.shape == (BATCH,)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("name", MODELS)
def test_backward_reaches_every_parameter(name: str, size: int) -> None:
    options = {"image_size": size, "channels": 3, **small(name)}
    gen = create_plugin("generator", name, options)
    disc = create_plugin("discriminator", name, options)
    disc(gen(gen.sample_latent(BATCH))).mean().backward()
    for module in (gen, disc):
        for param_name, param in module.named_parameters():
            assert param.grad is not None, param_name
            assert torch.isfinite(param.grad).all(), param_name
    assert any(p.grad.abs().sum() > 0 for p in gen.parameters())


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("name", MODELS)
def test_conditional_models_use_the_labels(name: str, size: int) -> None:
    options = {"image_size": size, "num_classes": 10, **small(name)}
    gen = create_plugin("generator", name, options)
    disc = create_plugin("discriminator", name, options).eval()
    gen.eval()
    latent = gen.sample_latent(1).expand(10, -1)
    labels = torch.arange(10)

    images = gen(latent, labels)
    assert images.shape == (10, 1, size, size)
    assert not torch.allclose(images[0], images[1]), "the same z with different labels should differ"

    logits = disc(images[:1].expand(10, -1, -1, -1), labels)
    assert logits.shape == (10,)
    assert not torch.allclose(logits[0], logits[1]), "the projection term should depend on the label"

    (logits.sum() + images.sum()).backward()
    assert gen.condition.embedding.weight.grad is not None
    assert disc.projection.embedding.weight.grad is not None


@pytest.mark.parametrize("name", MODELS)
def test_conditional_models_require_labels(name: str) -> None:
    options = {"num_classes": 10, **small(name)}
    gen = create_plugin("generator", name, options)
    disc = create_plugin("discriminator", name, options)
    with pytest.raises(ValueError, match="labels"):
        gen(gen.sample_latent(2))
    with pytest.raises(ValueError, match="labels"):
        disc(torch.zeros(2, 1, 28, 28))
    with pytest.raises(ValueError, match="shape"):
        gen(gen.sample_latent(2), torch.zeros(3, dtype=torch.long))


@pytest.mark.parametrize("name", MODELS)
def test_unconditional_models_ignore_labels(name: str) -> None:
    gen = create_plugin("generator", name, small(name)).eval()
    disc = create_plugin("discriminator", name, small(name)).eval()
    latent = gen.sample_latent(2)
    labels = torch.tensor([3, 7])
    assert torch.equal(gen(latent, labels), gen(latent))
    images = gen(latent)
    assert torch.equal(disc(images, labels), disc(images))
    assert gen.condition.embedding is None
    assert disc.projection is None


def test_label_embedding_width() -> None:
    assert create_plugin("generator", "mlp", {"num_classes": 10}).condition.embedding.weight.shape == (10, 10)
    assert create_plugin("generator", "mlp", {"num_classes": 1000}).condition.embedding.weight.shape == (1000, 128)
    gen = create_plugin("generator", "dcgan", {"num_classes": 10, "embedding_dim": 32})
    assert gen.condition.embedding.weight.shape == (10, 32)
    assert gen.net[0].in_channels == 100 + 32


@pytest.mark.parametrize("kind", ["generator", "discriminator"])
@pytest.mark.parametrize("size", [30, 16, 128])
def test_dcgan_refuses_other_image_sizes(kind: str, size: int) -> None:
    with pytest.raises(ConfigError, match=rf"image_size={size}: .*image_size must be one of 28, 32, 64"):
        create_plugin(kind, "dcgan", {"image_size": size})
    assert get_plugin(kind, "dcgan").Options.model_json_schema()["properties"]["image_size"]["enum"] == SIZES


@pytest.mark.parametrize("kind", ["generator", "discriminator"])
def test_options_are_bounded(kind: str) -> None:
    with pytest.raises(ConfigError, match="width"):
        create_plugin(kind, "dcgan", {"width": 0})
    with pytest.raises(ConfigError, match="hidden"):
        create_plugin(kind, "mlp", {"hidden": 0})
    with pytest.raises(ConfigError, match="widht"):
        create_plugin(kind, "dcgan", {"widht": 64})


def test_mlp_dropout_is_optional() -> None:
    assert not any(isinstance(m, nn.Dropout) for m in create_plugin("discriminator", "mlp").modules())
    disc = create_plugin("discriminator", "mlp", {"dropout": 0.3, "hidden": 8})
    assert sum(isinstance(m, nn.Dropout) for m in disc.modules()) == 3
    # Same parameter names with and without dropout, so checkpoints do not depend on it.
    assert disc.state_dict().keys() == create_plugin("discriminator", "mlp", {"hidden": 8}).state_dict().keys()
    with pytest.raises(ConfigError, match="dropout"):
        create_plugin("discriminator", "mlp", {"dropout": 1.0})


def test_dcgan_init() -> None:
    for kind in ("generator", "discriminator"):
        model = create_plugin(kind, "dcgan", {"image_size": 64, "channels": 3})
        convs = [m.weight for m in model.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]
        weights = torch.cat([w.flatten() for w in convs])
        assert weights.mean().abs() < 1e-3
        assert weights.std().item() == pytest.approx(0.02, rel=0.02)
        for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
            assert bn.weight.mean().item() == pytest.approx(1.0, abs=0.01)
            assert 0.01 < bn.weight.std().item() < 0.03
            assert torch.equal(bn.bias, torch.zeros_like(bn.bias))
        assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d))


def test_dcgan_layout() -> None:
    """Batch norm on every generator stage but the output, and on every discriminator stage but the first."""
    gen = create_plugin("generator", "dcgan", {"image_size": 64})
    disc = create_plugin("discriminator", "dcgan", {"image_size": 64})
    assert [type(m) for m in gen.net][-2:] == [nn.ConvTranspose2d, nn.Tanh]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in gen.modules()) == 4
    assert sum(isinstance(m, nn.BatchNorm2d) for m in disc.modules()) == 3
    assert isinstance(disc.features[1], nn.LeakyReLU)
    assert not any(isinstance(m, nn.Sigmoid) for m in disc.modules())
    widths = [m.out_channels for m in gen.net if isinstance(m, nn.ConvTranspose2d)]
    assert widths == [512, 256, 128, 64, 1]
    gen28 = create_plugin("generator", "dcgan", {"image_size": 28})
    assert [m.out_channels for m in gen28.net if isinstance(m, nn.ConvTranspose2d)] == [128, 64, 1]
    assert gen28.net[0].kernel_size == (7, 7)


def test_parameter_counts() -> None:
    # The classic pytorch/examples DCGAN (nz=100, ngf=ndf=64, nc=3) has exactly these counts.
    assert param_count(create_plugin("generator", "dcgan", {"image_size": 64, "channels": 3})) == 3_576_704
    assert param_count(create_plugin("discriminator", "dcgan", {"image_size": 64, "channels": 3})) == 2_765_568

    # MLP: z(100) -> 256 -> 512 -> 1024 -> 784 and 784 -> 1024 -> 512 -> 256 -> 1, weights plus biases.
    def linear(a: int, b: int) -> int:
        return a * b + b

    pixels = 28 * 28
    g = linear(100, 256) + linear(256, 512) + linear(512, 1024) + linear(1024, pixels)
    d = linear(pixels, 1024) + linear(1024, 512) + linear(512, 256) + linear(256, 1)
    assert param_count(create_plugin("generator", "mlp")) == g == 1_486_352
    assert param_count(create_plugin("discriminator", "mlp")) == d == 1_460_225

    # DCGAN-28 is small: the counts grow with the image size and the width.
    counts = [param_count(create_plugin("generator", "dcgan", {"image_size": s})) for s in SIZES]
    assert counts == sorted(counts)
    assert 100_000 < counts[0] < 2_000_000


@pytest.mark.parametrize("size", SIZES)
def test_dcgan_discriminator_accepts_channels_last(size: int) -> None:
    disc = create_plugin("discriminator", "dcgan", {"image_size": size, "channels": 3, "num_classes": 10, "width": 8})
    disc.eval()
    images = torch.rand(4, 3, size, size) * 2 - 1
    labels = torch.tensor([0, 1, 2, 3])
    expected = disc(images, labels)
    disc = disc.to(memory_format=torch.channels_last)
    got = disc(images.to(memory_format=torch.channels_last), labels)
    assert got.shape == (4,)
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-5), (got, expected)


@pytest.mark.parametrize("name", MODELS)
def test_generator_output_feeds_channels_last_models(name: str) -> None:
    options = {"image_size": 32, "channels": 3, "num_classes": 10, **small(name)}
    gen = create_plugin("generator", name, options).to(memory_format=torch.channels_last)
    disc = create_plugin("discriminator", name, options).to(memory_format=torch.channels_last)
    labels = torch.arange(2)
    images = gen(gen.sample_latent(2), labels).contiguous(memory_format=torch.channels_last)
    disc(images, labels).sum().backward()
    assert math.isfinite(sum(p.grad.sum().item() for p in gen.parameters()))
