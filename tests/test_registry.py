"""The registry against real entry points: small fake distributions are put on sys.path as dist-info folders."""

from __future__ import annotations

import contextlib
import importlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import gankit.interfaces
from gankit.errors import ConfigError, PluginError, PluginFailure
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


@contextlib.contextmanager
def installed(
    site: Path, name: str, entry_points: dict[str, dict[str, str]], modules: dict[str, str]
) -> Iterator[Path]:
    """``name`` 1.2.3 installed under ``site`` and on ``sys.path`` for the block; afterwards its modules and
    registrations are gone, so no other test sees it."""
    make_distribution(site, name, entry_points, modules)
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    try:
        yield site
    finally:
        sys.path.remove(str(site))
        for module in modules:
            sys.modules.pop(module, None)
        for group, names in entry_points.items():
            kind = next(kind for kind, spec in KINDS.items() if spec.group == group)
            for plugin in names:
                registry.unregister(kind, plugin)
        importlib.invalidate_caches()


def one_plugin(root: Path, distribution: str, kind: str, name: str, target: str, source: str) -> Registry:
    """Install ``distribution`` advertising plugin ``name`` of ``kind`` at ``target`` (``module:Class``), the module
    being ``source``; returns a fresh registry that sees it."""
    make_distribution(root, distribution, {KINDS[kind].group: {name: target}}, {target.partition(":")[0]: source})
    return Registry()


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
    for kind in KINDS:  # forget classes loaded into the process-wide registry from this test's distributions
        for name in ("dcgan", "quitter", "tiny"):
            registry.unregister(kind, name)


def test_builtins_listed_from_metadata_without_importing(monkeypatch: pytest.MonkeyPatch) -> None:
    # monkeypatch puts the modules back afterwards: a later test must not import a second copy of bce (whose
    # classes would then differ from the registry's loaded ones)
    for module in ("gankit_plugins.dcgan", "gankit_plugins.mlp", "gankit_plugins.bce"):
        monkeypatch.delitem(sys.modules, module, raising=False)
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
    missing = "import a_module_that_does_not_exist\n"
    fresh = one_plugin(plugin_site, "broken-gan", "generator", "broken", "broken_plugin:Model", missing)
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
    not_a_loss = "class NotALoss:\n    pass\n"
    fresh = one_plugin(plugin_site, "wrong-gan", "loss", "wrong", "wrong_plugin:NotALoss", not_a_loss)
    with pytest.raises(PluginError, match=r"not a subclass of gankit\.interfaces\.Loss$"):
        fresh.load("loss", "wrong")
    assert gankit.interfaces.Loss is Loss  # the path the message names is real


def test_kinds_are_listed_without_importing_torch() -> None:
    """``KINDS`` is the one list of kinds, and the CLI reads it at start-up: that must stay instant."""
    code = "import sys, gankit.cli; assert 'torch' not in sys.modules, 'gankit.cli imported torch'"
    subprocess.run([sys.executable, "-c", code], check=True)
    assert KINDS["loss"].base is Loss and KINDS["loss"].group == "gankit.losses"


def test_incompatible_api_version_is_refused(plugin_site: Path) -> None:
    source = TINY_GENERATOR + "\nTiny.api_version = 999\n"
    fresh = one_plugin(plugin_site, "future-gan", "generator", "future", "tiny_plugin:Tiny", source)
    with pytest.raises(PluginError, match="API 999"):
        fresh.load("generator", "future")


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


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", float("nan")])
def test_float_options_refuse_nan_and_infinity(value: object) -> None:
    """Not a misleading bound ('should be less than or equal to 0.9'): NaN compares false with every bound."""
    with pytest.raises(ConfigError, match=r"dropout=.*: Input should be a finite number$"):
        registry.options_for("discriminator", "mlp", {"dropout": value})


def test_unknown_kind() -> None:
    with pytest.raises(PluginError, match="unknown plugin kind"):
        registry.names("critic")


def test_a_clash_lists_the_qualified_names_and_each_one_works(plugin_site: Path) -> None:
    make_distribution(
        plugin_site, "dup-gan", {"gankit.generators": {"dcgan": "tiny_plugin:Tiny"}}, {"tiny_plugin": TINY_GENERATOR}
    )
    fresh = Registry()
    with pytest.raises(PluginError) as error:
        fresh.entry("generator", "dcgan")
    assert "name one of them: dup-gan:dcgan or gankit:dcgan" in str(error.value)
    assert fresh.load("generator", "gankit:dcgan").__module__ == "gankit_plugins.dcgan"
    assert fresh.load("generator", "dup_gan:dcgan").__name__ == "Tiny"  # spelt as pip would accept it
    assert fresh.entry("generator", "Dup-Gan:dcgan").distribution == "dup-gan"
    assert set(fresh.clashes("generator")) == {("generator", "dcgan")}
    assert all(fresh.status(entry) == "ok" for entry in fresh.entries("generator") if entry.name == "dcgan")
    from cli_helpers import run

    listing = run("plugins", "--kind", "generator").output
    assert "name clash: use gankit:dcgan" in listing and "name clash: use dup-gan:dcgan" in listing
    with pytest.raises(PluginError, match="no distribution 'nope' provides generator 'dcgan'"):
        fresh.entry("generator", "nope:dcgan")


def test_train_and_export_with_a_qualified_name_while_a_package_clashes(plugin_site: Path, tmp_path: Path) -> None:
    from cli_helpers import run

    from gankit.export import read_export_metadata

    make_distribution(
        plugin_site, "dup-gan", {"gankit.generators": {"dcgan": "tiny_plugin:Tiny"}}, {"tiny_plugin": TINY_GENERATOR}
    )
    common = ["--dataset", "fake", "--data-opt", "size=32", "--batch-size", "16", "--max-steps", "1", "--quiet"]
    small = ["--gen-opt", "width=4", "--disc-opt", "width=4", "--sample-count", "4", "--device", "cpu"]
    refused = run("train", "--gen", "dcgan", *common, *small, "--out", tmp_path / "plain")
    assert refused.exit_code == 2 and "gankit:dcgan" in refused.output
    result = run("train", "--gen", "gankit:dcgan", *common, *small, "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    meta = read_export_metadata(tmp_path / "run" / "generator.safetensors")
    assert (meta.plugin, meta.distribution) == ("dcgan", "gankit")
    assert run("sample", tmp_path / "run", "--out", tmp_path / "grid.png").exit_code == 0  # loads despite the clash


def test_replace_shadows_an_installed_plugin_in_this_process() -> None:
    class Shadow(Loss):
        def discriminator_loss(self, inputs):  # type: ignore[no-untyped-def]
            return inputs.real_logits.sum() * 0

        def generator_loss(self, inputs):  # type: ignore[no-untyped-def]
            return inputs.fake_logits.sum() * 0

    registry.register("loss", "nonsat", Shadow, replace=True)
    try:
        assert isinstance(create_plugin("loss", "nonsat"), Shadow)
        assert create_plugin("loss", "gankit:nonsat").__class__.__name__ != "Shadow"  # the installed one, qualified
    finally:
        registry.unregister("loss", "nonsat")
    assert create_plugin("loss", "nonsat").__class__.__name__ != "Shadow"


def test_a_class_missing_an_abstract_method_is_refused_naming_it(plugin_site: Path) -> None:
    source = "from gankit.interfaces import Loss\n\nclass Half(Loss):\n    def discriminator_loss(self, inputs):\n"
    source += "        return inputs.real_logits.mean()\n"
    fresh = one_plugin(plugin_site, "half-gan", "loss", "half", "wrong_plugin:Half", source)
    with pytest.raises(PluginError, match=r"^loss 'half' from 'half-gan' 1.2.3 .* does not implement generator_loss"):
        fresh.load("loss", "half")
    assert fresh.status(fresh.entry("loss", "half")) != "ok"


def test_sys_exit_while_importing_a_plugin_is_isolated(plugin_site: Path) -> None:
    exits = "import sys\nsys.exit(3)\n"
    fresh = one_plugin(plugin_site, "exit-gan", "generator", "quitter", "broken_plugin:Model", exits)
    with pytest.raises(PluginError, match=r"'exit-gan' 1\.2\.3 .* failed to load: SystemExit: 3"):
        fresh.load("generator", "quitter")
    from cli_helpers import run

    result = run("plugins", "--kind", "generator")
    assert result.exit_code == 0 and "quitter" in result.output and "SystemExit" in result.output


def test_a_constructor_that_raises_or_forgets_super_init_is_named(plugin_site: Path) -> None:
    source = TINY_GENERATOR + (
        "\nclass Raising(Tiny):\n    def __init__(self, options):\n        raise RuntimeError('no GPU here')\n"
        "\nclass Forgetful(Tiny):\n    def __init__(self, options):\n        self.options = options\n"
    )
    entries = {"raising": "tiny_plugin:Raising", "forgetful": "tiny_plugin:Forgetful"}
    make_distribution(plugin_site, "ctor-gan", {"gankit.generators": entries}, {"tiny_plugin": source})
    fresh = Registry()
    with pytest.raises(PluginFailure, match=r"^generator 'raising' from 'ctor-gan' 1.2.3 raised in its constructor: "):
        fresh.create("generator", "raising")
    with pytest.raises(PluginError, match=r"^generator 'forgetful' from 'ctor-gan' 1.2.3 did not call super"):
        fresh.create("generator", "forgetful")
