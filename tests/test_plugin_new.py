"""``gankit plugin new``: the skeleton installs with pip, passes its own tests at once and trains by name."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_helpers import assert_user_error, pytest_in, run

from gankit.registry import _scaffold as plugin_new
from gankit.registry import registry

NAME = "skelcheck"


@pytest.fixture(scope="module")
def skeleton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A skeleton written by the CLI and pip-installed (editable) into a throwaway folder, never into this environment.

    That folder holds the distribution's metadata (its entry points); it goes on ``sys.path`` here, and on
    ``PYTHONPATH`` with the package's own folder for subprocesses, as an installed ``.pth`` file would do.
    """
    parent = tmp_path_factory.mktemp("plugin-new")
    result = run("plugin", "new", NAME, "--dir", parent)
    assert result.exit_code == 0, result.output
    folder, site = parent / f"gankit-{NAME}", parent / "site"
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(site)]
    subprocess.run([*pip, "-e", str(folder)], check=True)
    paths = [str(site), str(folder)]
    sys.path.extend(paths)
    importlib.invalidate_caches()
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("PYTHONPATH", os.pathsep.join([*paths, *filter(None, [os.environ.get("PYTHONPATH")])]))
            yield folder
    finally:
        for path in paths:
            sys.path.remove(path)
        for module in [module for module in sys.modules if module.startswith(f"gankit_{NAME}")]:
            del sys.modules[module]
        for kind in ("generator", "discriminator", "loss"):
            registry.unregister(kind, NAME)  # forgets the loaded class too
        importlib.invalidate_caches()


def test_writes_a_complete_package(skeleton: Path) -> None:
    package = f"gankit_{NAME}"
    files = sorted(str(path.relative_to(skeleton)) for path in skeleton.rglob("*") if path.is_file())
    expected = ["README.md", f"{package}/__init__.py", f"{package}/losses.py", f"{package}/models.py"]
    expected += ["pyproject.toml", f"tests/test_{package}.py"]
    assert [name for name in files if ".egg-info" not in name] == sorted(expected)
    pyproject = (skeleton / "pyproject.toml").read_text()
    assert f'name = "gankit-{NAME}"' in pyproject
    prefix = NAME.capitalize()
    assert f'{NAME} = "{package}.models:{prefix}Generator"' in pyproject
    assert f'{NAME} = "{package}.losses:{prefix}Loss"' in pyproject
    assert "$" not in "".join(path.read_text() for path in skeleton.rglob("*.py"))


@pytest.mark.slow
def test_the_package_passes_its_own_tests_at_once(skeleton: Path) -> None:
    result = pytest_in(skeleton)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "4 passed" in result.stdout


def test_generated_code_passes_its_own_lint_config_even_with_the_longest_name(tmp_path: Path) -> None:
    longest = "l" * plugin_new.MAX_NAME_LENGTH
    assert run("plugin", "new", longest, "--dir", tmp_path).exit_code == 0
    for command in (["check", "."], ["format", "--check", "."]):
        result = subprocess.run(
            [sys.executable, "-m", "ruff", *command],
            cwd=tmp_path / f"gankit-{longest}",
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_it_is_listed_and_trains_by_name(skeleton: Path, tmp_path: Path) -> None:
    listing = run("plugins")
    assert any(NAME in line and f"gankit-{NAME}" in line for line in listing.output.splitlines()), listing.output
    out = tmp_path / "run"
    result = run(
        "train", "--gen", NAME, "--loss", NAME, "--dataset", "fake", "--max-steps", "2", "--data-opt", "size=64",
        "--batch-size", "16", "--sample-count", "4", "--device", "cpu", "--quiet", "--out", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    resolved = json.loads((out / "config.json").read_text())
    assert resolved["discriminator"] == NAME and resolved["generator_options"]["hidden"] == 128
    assert (out / "generator.safetensors").is_file()


def test_refuses_to_overwrite_an_existing_folder(tmp_path: Path) -> None:
    existing = tmp_path / "gankit-mine"
    existing.mkdir()
    (existing / "keep.txt").write_text("precious")
    assert_user_error(run("plugin", "new", "mine", "--dir", tmp_path), "already exists")
    assert [path.name for path in existing.iterdir()] == ["keep.txt"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["gankit-mine"]  # no staging folder left behind


@pytest.mark.parametrize("name", ["My GAN", "1gan", "gan-", "gan--x", "_gan", "Gan", "gan.x", "x" * 41, ""])
def test_invalid_names_are_one_line_errors(tmp_path: Path, name: str) -> None:
    assert_user_error(run("plugin", "new", name, "--dir", tmp_path), "is not valid")
    assert list(tmp_path.iterdir()) == []


def test_names_map_to_distribution_package_and_classes() -> None:
    values = plugin_new.template_values("my-gan_2")
    assert values["distribution"] == "gankit-my-gan_2"
    assert values["package"] == "gankit_my_gan_2"
    assert values["prefix"] == "MyGan2"


def test_help() -> None:
    for command in (["plugin"], ["plugin", "new"]):
        result = run(*command, "--help")
        assert result.exit_code == 0 and "Usage:" in result.output
    assert "--dir" in run("plugin", "new", "--help").output
