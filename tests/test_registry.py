"""The registry against real entry points: small fake distributions are put on sys.path as dist-info folders."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import gankit.interfaces
from gankit.errors import ConfigError, PluginError
from gankit.interfaces import Generator, GeneratorOptions, Loss
from gankit.registry import KINDS, Registry, create_plugin, list_plugins, register_plugin, registry


def make_distribution(root: Path, name: str, entry_points: dict[str, dict[str, str]], modules: dict[str, str]) -> None:
    """Write an installed-looking distribution (dist-info + modules) under ``root``."""
    info = root / f"{name.replace('-', '_')}-1.2.3.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.2.3\n")
    lines = []
    for group, entries in entry_points.items():
        lines.append(f"[{group}]")
        lines.extend(f"{key} = {value}" for key, value in entries.items())
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    for module, source in modules.items():
        (root / f"{module}.py").write_text(source)


TINY_GENERATOR = """
import torch
from gankit.interfaces import Generator

class Tiny(Generator):
    def __init__(self, options):
        super().__init__(options)
        self.linear = torch.nn.Linear(self.latent_dim, 1)

    def forward(self, latent, labels=None):
        return self.linear(latent).tanh().reshape(-1, 1, 1, 1).expand(-1, *self.image_shape)
"""


@pytest.fixture
def plugin_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for module in ("tiny_plugin", "broken_plugin", "wrong_plugin", "dup_plugin"):
        sys.modules.pop(module, None)


def test_builtins_listed_from_metadata_without_importing() -> None:
    for module in ("gankit_plugins.dcgan", "gankit_plugins.mlp", "gankit_plugins.bce"):
        sys.modules.pop(module, None)
    fresh = Registry()
    assert {"dcgan", "mlp"} <= set(fresh.names("generator"))
    assert {"nonsat", "minimax"} <= set(fresh.names("loss"))
    assert {"mnist", "fake"} <= set(fresh.names("dataset"))
    assert "gankit_plugins.dcgan" not in sys.modules
    assert all(entry.distribution == "gankit" for entry in fresh.entries("generator") if entry.name == "dcgan")


def test_third_party_plugin_is_found_and_loaded(plugin_site: Path) -> None:
    make_distribution(
        plugin_site, "tiny-gan", {"gankit.generators": {"tiny": "tiny_plugin:Tiny"}}, {"tiny_plugin": TINY_GENERATOR}
    )
    fresh = Registry()
    assert "tiny" in fresh.names("generator")
    generator = fresh.create("generator", "tiny", {"latent_dim": 3, "image_size": 5})
    assert isinstance(generator, Generator)
    assert generator(generator.sample_latent(2)).shape == (2, 1, 5, 5)
    assert fresh.entry("generator", "tiny").distribution == "tiny-gan"


def test_unknown_name_lists_available_and_suggests() -> None:
    with pytest.raises(PluginError) as error:
        registry.load("generator", "dcgn")
    message = str(error.value)
    assert "unknown generator 'dcgn'" in message
    assert "Did you mean 'dcgan'?" in message
    assert "mlp" in message


def test_broken_plugin_is_reported_and_others_still_work(plugin_site: Path) -> None:
    make_distribution(
        plugin_site,
        "broken-gan",
        {"gankit.generators": {"broken": "broken_plugin:Model"}},
        {"broken_plugin": "import a_module_that_does_not_exist\n"},
    )
    fresh = Registry()
    with pytest.raises(PluginError) as error:
        fresh.load("generator", "broken")
    message = str(error.value)
    assert "generator 'broken'" in message and "'broken-gan' 1.2.3" in message
    assert "ModuleNotFoundError" in message and "a_module_that_does_not_exist" in message
    statuses = {entry.name: fresh.status(entry) for entry in fresh.entries("generator")}
    assert statuses["dcgan"] == "ok" and statuses["mlp"] == "ok"
    assert statuses["broken"] != "ok"


def test_same_name_from_two_distributions_names_both(plugin_site: Path) -> None:
    make_distribution(
        plugin_site, "dup-gan", {"gankit.generators": {"dcgan": "tiny_plugin:Tiny"}}, {"tiny_plugin": TINY_GENERATOR}
    )
    with pytest.raises(PluginError) as error:
        Registry().load("generator", "dcgan")
    assert "'gankit'" in str(error.value) and "'dup-gan'" in str(error.value)


def test_wrong_base_class_is_refused(plugin_site: Path) -> None:
    make_distribution(
        plugin_site,
        "wrong-gan",
        {"gankit.losses": {"wrong": "wrong_plugin:NotALoss"}},
        {"wrong_plugin": "class NotALoss:\n    pass\n"},
    )
    with pytest.raises(PluginError, match=r"not a subclass of gankit\.interfaces\.Loss$"):
        Registry().load("loss", "wrong")
    assert gankit.interfaces.Loss is Loss  # the path the message names is real


def test_kinds_are_listed_without_importing_torch() -> None:
    """``KINDS`` is the one list of kinds, and the CLI reads it at start-up: that must stay instant."""
    code = "import sys, gankit.cli; assert 'torch' not in sys.modules, 'gankit.cli imported torch'"
    subprocess.run([sys.executable, "-c", code], check=True)
    assert KINDS["loss"].base is Loss and KINDS["loss"].group == "gankit.losses"


def test_incompatible_api_version_is_refused(plugin_site: Path) -> None:
    source = TINY_GENERATOR + "\nTiny.api_version = 999\n"
    make_distribution(
        plugin_site, "future-gan", {"gankit.generators": {"future": "tiny_plugin:Tiny"}}, {"tiny_plugin": source}
    )
    with pytest.raises(PluginError, match="API 999"):
        Registry().load("generator", "future")


def test_runtime_registration_and_options_validation() -> None:
    @register_plugin("loss", "zero-test")
    class ZeroLoss(Loss):
        def discriminator_loss(self, inputs):  # type: ignore[no-untyped-def]
            return inputs.real_logits.sum() * 0

        def generator_loss(self, inputs):  # type: ignore[no-untyped-def]
            return inputs.fake_logits.sum() * 0

    try:
        assert "zero-test" in list_plugins("loss")
        assert isinstance(create_plugin("loss", "zero-test"), ZeroLoss)
        with pytest.raises(PluginError, match="already registered"):
            registry.register("loss", "zero-test", ZeroLoss)
        with pytest.raises(PluginError, match="already registered"):
            registry.register("loss", "nonsat", ZeroLoss)
    finally:
        registry.unregister("loss", "zero-test")
    assert "zero-test" not in list_plugins("loss")


def test_options_are_typed_bounded_and_closed() -> None:
    options = registry.options_for("generator", "mlp", {"latent_dim": "32"})
    assert isinstance(options, GeneratorOptions) and options.latent_dim == 32
    with pytest.raises(ConfigError, match="latent_dim"):
        registry.options_for("generator", "mlp", {"latent_dim": -1})
    with pytest.raises(ConfigError, match="no_such_option"):
        registry.options_for("generator", "mlp", {"no_such_option": 1})


def test_unknown_kind() -> None:
    with pytest.raises(PluginError, match="unknown plugin kind"):
        registry.names("critic")
