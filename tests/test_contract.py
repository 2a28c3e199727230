"""The plugin contract checked before the first step, and a plugin that raises named in one line.

A package with one mistake per plugin is installed as a real distribution (a dist-info folder on ``sys.path``), and
``gankit train`` is run on each mistake: one line naming the plugin and its distribution, exit code 2, no traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from cli_helpers import assert_user_error, registered, run
from test_registry import installed

from gankit.registry import check_models, create_plugin, registry

DIST = "bad-gan"
ORIGIN = "from 'bad-gan' 1.2.3"

MISTAKES = '''
import torch
from gankit.interfaces import Dataset, Discriminator, Generator, ImageData, Loss


class Flat(Generator):
    """A working MLP generator the mistakes below depart from."""

    def __init__(self, options):
        super().__init__(options)
        self.net = torch.nn.Linear(self.latent_dim, self.image_shape[0] * self.image_shape[1] * self.image_shape[2])

    def forward(self, latent, labels=None):
        return self.net(latent).tanh().view(-1, *self.image_shape)


class Critic(Discriminator):
    def __init__(self, options):
        super().__init__(options)
        self.net = torch.nn.Linear(self.image_shape[0] * self.image_shape[1] * self.image_shape[2], 1)
        self.norm = torch.nn.BatchNorm1d(1)

    def forward(self, images, labels=None):
        return self.norm(self.net(images.flatten(1))).flatten()


class ColumnCritic(Critic):
    def forward(self, images, labels=None):
        return self.net(images.flatten(1))  # (N, 1): the mistake


class Loud(Flat):
    def forward(self, latent, labels=None):
        return 5 * self.net(latent).view(-1, *self.image_shape)  # no tanh


class Big(Flat):
    def forward(self, latent, labels=None):
        return torch.zeros(latent.shape[0], self.image_shape[0], 32, 32)  # asked for 28x28


class Forgetful(Generator):
    def __init__(self, options):
        self.options = options
        self.net = torch.nn.Linear(options.latent_dim, 1)  # no super().__init__()

    def forward(self, latent, labels=None):
        return self.net(latent)


class Fragile(Flat):
    """Raises on its third forward, inside a training step."""

    def forward(self, latent, labels=None):
        self.calls = getattr(self, "calls", 0) + 1
        if self.calls == 3:
            raise ValueError("the third batch broke me")
        return super().forward(latent, labels)


class NoChannels(Dataset):
    def load(self, split="train"):
        images = torch.zeros(64, 28, 28, dtype=torch.uint8)
        return ImageData(images=images, labels=torch.zeros(64, dtype=torch.int64), num_classes=0)


class Exploding(Dataset):
    def load(self, split="train"):
        raise OSError("disk on fire")


class HalfLoss(Loss):
    def discriminator_loss(self, inputs):
        return inputs.fake_logits.mean() - inputs.real_logits.mean()


class VectorLoss(HalfLoss):
    def generator_loss(self, inputs):
        return -inputs.fake_logits  # one value per image instead of a scalar


class R1WithoutFlag(VectorLoss):
    """An R1 penalty that forgot to declare it differentiates with respect to the real images."""

    def discriminator_loss(self, inputs):
        (grad,) = torch.autograd.grad(inputs.real_logits.sum(), inputs.real_images, create_graph=True)
        return super().discriminator_loss(inputs) + grad.square().sum()

    def generator_loss(self, inputs):
        return -inputs.fake_logits.mean()
'''

ENTRY_POINTS = {
    "gankit.generators": {
        name: f"bad_gan:{cls}"
        for name, cls in {
            "flat": "Flat",
            "loud": "Loud",
            "big": "Big",
            "forgetful": "Forgetful",
            "fragile": "Fragile",
        }.items()
    },
    "gankit.discriminators": {"critic": "bad_gan:Critic", "column": "bad_gan:ColumnCritic"},
    "gankit.datasets": {"nochannels": "bad_gan:NoChannels", "exploding": "bad_gan:Exploding"},
    "gankit.losses": {"half": "bad_gan:HalfLoss", "vector": "bad_gan:VectorLoss", "r1": "bad_gan:R1WithoutFlag"},
}


@pytest.fixture(scope="module")
def bad_gan(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """``bad-gan`` 1.2.3, installed as a real distribution: its dist-info and module on ``sys.path``."""
    with installed(tmp_path_factory.mktemp("bad-gan-site"), DIST, ENTRY_POINTS, {"bad_gan": MISTAKES}) as site:
        yield site


def train(tmp_path: Path, *args: str) -> list[str]:
    defaults = {"--gen": "flat", "--disc": "critic", "--dataset": "fake", "--loss": "nonsat"}
    given = dict(zip(args[::2], args[1::2], strict=True))
    chosen = [part for flag, value in {**defaults, **given}.items() for part in (flag, value)]
    small = ["--data-opt", "size=64"] if given.get("--dataset", "fake") == "fake" else []
    small += ["--batch-size", "16", "--max-steps", "3", "--sample-count", "4"]
    return ["train", *chosen, *small, "--device", "cpu", "--quiet", "--out", str(tmp_path / "run")]


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--disc", "column"], ["discriminator 'column'", "shape (2, 1)", "(N,)"]),
        (["--gen", "loud"], ["generator 'loud'", "[-1, 1]", "tanh"]),
        (["--gen", "big"], ["generator 'big'", "(2, 1, 32, 32)", "(1, 28, 28)"]),
        (["--gen", "forgetful"], ["generator 'forgetful'", "super().__init__(options)"]),
        (["--dataset", "nochannels"], ["dataset 'nochannels'", "(64, 28, 28)", "channel axis"]),
        (["--dataset", "exploding"], ["dataset 'exploding'", "OSError: disk on fire"]),
        (["--loss", "half"], ["loss 'half'", "does not implement generator_loss"]),
        (["--loss", "vector"], ["loss 'vector'", "generator_loss"]),  # seen in the first step
        (["--loss", "r1"], ["loss 'r1'"]),
    ],
)
def test_each_mistake_is_one_line_naming_the_plugin(
    bad_gan: Path, tmp_path: Path, args: list[str], fragments: list[str]
) -> None:
    result = run(*train(tmp_path, *args))
    assert_user_error(result, ORIGIN, *fragments)
    if args[-1] not in ("vector", "r1"):  # the losses run in the first step; the rest is refused before any file
        assert not (tmp_path / "run").exists()


def test_the_working_plugins_of_the_package_train(bad_gan: Path, tmp_path: Path) -> None:
    result = run(*train(tmp_path))
    assert result.exit_code == 0, result.output


def test_a_failure_inside_a_step_names_the_plugin_and_keeps_the_traceback(bad_gan: Path, tmp_path: Path) -> None:
    result = run(*train(tmp_path, "--gen", "fragile"))
    log = tmp_path / "run" / "error.log"
    assert_user_error(result, "generator 'fragile'", ORIGIN, "ValueError: the third batch broke me", str(log))
    assert "Traceback" in log.read_text() and "in forward" in log.read_text()


def test_debug_shows_the_traceback(bad_gan: Path, tmp_path: Path) -> None:
    result = run("--debug", *train(tmp_path, "--dataset", "exploding"))
    assert result.exit_code == 2
    assert "Traceback" in result.output and "raise OSError" in result.output
    assert result.output.strip().splitlines()[-1].startswith("Error: dataset 'exploding'")


def test_plugins_lists_an_abstract_class_as_an_error(bad_gan: Path) -> None:
    status = registry.status(registry.entry("loss", "half"))
    assert status.startswith("loss 'half' from 'bad-gan' 1.2.3") and "generator_loss" in status
    result = run("plugins", "--kind", "loss")
    assert "does not implement" in result.output


def test_the_check_leaves_the_models_as_they_were(bad_gan: Path) -> None:
    """Batch norm statistics, the train/eval mode and the global random stream are untouched by the forward."""
    generator = create_plugin("generator", "dcgan", {"width": 8})
    discriminator = create_plugin("discriminator", "critic", {})
    before = {key: value.clone() for key, value in discriminator.state_dict().items()}
    before_g = {key: value.clone() for key, value in generator.state_dict().items()}
    generator.train()
    torch.manual_seed(3)
    expected = torch.rand(3)
    torch.manual_seed(3)
    check_models(generator, discriminator, who_g="g", who_d="d")
    assert torch.equal(torch.rand(3), expected)
    assert generator.training and discriminator.training
    for key, value in discriminator.state_dict().items():
        assert torch.equal(value, before[key]), key
    for key, value in generator.state_dict().items():
        assert torch.equal(value, before_g[key]), key


def test_a_conditional_generator_needs_a_conditional_discriminator(tmp_path: Path) -> None:
    args = train(tmp_path, "--gen", "dcgan", "--disc", "dcgan")
    result = run(*args, "--gen-opt", "num_classes=10", "--gen-opt", "width=8", "--disc-opt", "num_classes=0")
    who = ("generator 'dcgan' from 'gankit'", "discriminator 'dcgan' from 'gankit'")  # named, with the distribution
    assert_user_error(result, *who, "on none", "num_classes=10")


def test_info_shows_required_options_and_validator_checks_without_needing_them() -> None:
    from pydantic import Field, field_validator

    from gankit.interfaces import Dataset, DatasetOptions

    class FolderOptions(DatasetOptions):
        folder: str = Field(description="Where the PNGs are.")
        side: int = Field(32, description="Image side.")

        @field_validator("side")
        @classmethod
        def _power_of_two(cls, side: int) -> int:
            """A power of two."""
            if side & (side - 1):
                raise ValueError("side must be a power of two")
            return side

    class Folder(Dataset):
        Options = FolderOptions

        def load(self, split="train"):  # type: ignore[no-untyped-def]
            raise NotImplementedError

    with registered("dataset", "folder-test", Folder):
        result = run("info", "dataset", "folder-test")
    assert result.exit_code == 0, result.output
    folder = next(line for line in result.output.splitlines() if "folder" in line and "PNGs" in line)
    side = next(line for line in result.output.splitlines() if line.lstrip("│ ").startswith("side"))
    assert "required" in folder and "A power of two" in side


def test_info_of_a_model_with_a_required_option_says_what_the_layers_need() -> None:
    from pydantic import Field

    from gankit.interfaces import Generator, GeneratorOptions

    class DeepOptions(GeneratorOptions):
        depth: int = Field(description="Blocks.")

    class Deep(Generator):
        Options = DeepOptions

        def forward(self, latent, labels=None):  # type: ignore[no-untyped-def]
            return latent

    with registered("generator", "deep-test", Deep):
        result = run("info", "generator", "deep-test")
    assert result.exit_code == 0, result.output
    assert "warning: layers not shown: the model needs --gen-opt depth=..." in result.output


def test_sample_refuses_an_export_out_of_range(bad_gan: Path, tmp_path: Path) -> None:
    from gankit.export import save_generator

    save_generator(create_plugin("generator", "loud", {}), tmp_path / "loud.safetensors", plugin_name="loud")
    result = run("sample", tmp_path / "loud.safetensors", "--out", tmp_path / "grid.png")
    assert_user_error(result, "generator 'loud' from 'bad-gan' 1.2.3", "[-1, 1]")
    assert not (tmp_path / "grid.png").exists()
