"""The training settings a generator or a loss recommends: used where the user gives none, never over a value given,
the loss's over the generator's, checked when the plugin loads, shown by ``gankit info``, recorded in the run."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from cli_helpers import assert_user_error, registered, run

from gankit.errors import ConfigError, PluginError
from gankit.registry import registry
from gankit.run import build_config
from gankit_plugins.bce import NonSaturatingLoss
from gankit_plugins.mlp import MLPGenerator


class Recommending(MLPGenerator):
    recommended_training: ClassVar[dict[str, Any]] = {"lr_g": 2e-4, "lr_d": 3e-4, "ema": False, "betas": (0.5, 0.9)}


class AsksForTheEpochs(MLPGenerator):
    recommended_training: ClassVar[dict[str, Any]] = {"epochs": 50, "lr_g": 2e-4}


class SlowLoss(NonSaturatingLoss):
    recommended_training: ClassVar[dict[str, Any]] = {"lr_g": 1e-4, "d_steps": 2}


class RecommendsNonsense(MLPGenerator):
    recommended_training: ClassVar[dict[str, Any]] = {"lr_g": -1.0}


@pytest.fixture
def recommending() -> Iterator[None]:
    with registered("generator", "recommending", Recommending):
        yield


def test_recommendations_fill_what_is_unset_and_never_override(recommending: None) -> None:
    config = build_config({"generator": "recommending", "discriminator": "mlp"})
    assert (config.lr_g, config.lr_d, config.ema, config.betas) == (2e-4, 3e-4, False, (0.5, 0.9))
    assert config.batch_size == build_config({}).batch_size  # not recommended: the usual default
    given = build_config({"generator": "recommending", "discriminator": "mlp", "lr_g": 1e-3, "ema": True})
    assert (given.lr_g, given.ema, given.lr_d) == (1e-3, True, 3e-4)
    mlp = build_config({"generator": "mlp"})  # the built-in MLP recommends its own measured recipe
    assert (mlp.lr_g, mlp.lr_d, mlp.ema, mlp.batch_size) == (5e-4, 5e-4, False, build_config({}).batch_size)


def test_a_recommendation_outside_the_recipe_is_refused_when_the_plugin_loads() -> None:
    with registered("generator", "greedy", AsksForTheEpochs):
        with pytest.raises(PluginError, match=r"generator 'greedy' .* recommends epochs in recommended_training"):
            registry.load("generator", "greedy")
        with pytest.raises(PluginError, match="recommends epochs"):  # and where the run is assembled
            run_config = build_config({"generator": "greedy", "discriminator": "mlp", "dataset": "fake"})
            registry.create("generator", run_config.generator, {})


def test_an_invalid_recommended_value_names_the_generator() -> None:
    with registered("generator", "nonsense", RecommendsNonsense):
        with pytest.raises(ConfigError, match=r"generator 'nonsense' recommends.*lr_g.*recommended_training"):
            build_config({"generator": "nonsense", "discriminator": "mlp"})
        assert build_config({"generator": "nonsense", "discriminator": "mlp", "lr_g": 1e-4}).lr_g == 1e-4


def test_info_shows_them_and_a_run_records_them(recommending: None, tmp_path: Path) -> None:
    shown = run("info", "generator", "recommending")
    assert shown.exit_code == 0, shown.output
    assert "recommended training settings, used where you give none:" in shown.output
    assert "lr_g=0.0002" in shown.output and "ema=False" in shown.output
    out = tmp_path / "run"
    args = ["--gen", "recommending", "--disc", "mlp", "--dataset", "fake", "--data-opt", "size=32", "--max-steps", "1"]
    trained = run("train", *args, "--batch-size", "16", "--quiet", "--out", out)
    assert trained.exit_code == 0, trained.output
    recorded = json.loads((out / "config.json").read_text())
    assert (recorded["lr_g"], recorded["ema"]) == (2e-4, False)
    resumed = run("train", *args, "--batch-size", "16", "--quiet", "--resume", out, "--lr-g", "1e-3")
    assert_user_error(resumed, "lr_g was 0.0002, the command says 0.001")


def test_the_loss_recommends_too_and_wins_over_the_generator(recommending: None) -> None:
    with registered("loss", "slow", SlowLoss):
        config = build_config({"generator": "recommending", "discriminator": "mlp", "loss": "slow"})
        assert (config.lr_g, config.d_steps, config.lr_d, config.ema) == (1e-4, 2, 3e-4, False)
        assert build_config({"loss": "slow", "lr_g": 2e-3}).lr_g == 2e-3
    minimax = build_config({"generator": "dcgan", "loss": "minimax"})  # measured: minimax collapses at 1e-3 with EMA
    assert (minimax.lr_g, minimax.lr_d, minimax.ema) == (5e-4, 5e-4, False)
    nonsat = build_config({"generator": "dcgan", "loss": "nonsat"})
    assert (nonsat.lr_g, nonsat.ema) == (1e-3, True)


def test_a_run_says_which_recommendations_it_trains_with(tmp_path: Path) -> None:
    """A recipe other than the documented default is announced at the start (not under --quiet), naming who
    recommended it; a value given on the command line is not announced as recommended."""
    args = ["--dataset", "fake", "--data-opt", "size=64", "--batch-size", "16", "--max-steps", "1", "--overwrite"]
    both = run("train", "--gen", "mlp", "--loss", "minimax", *args, "--out", tmp_path / "a")
    assert both.exit_code == 0, both.output
    lines = [line for line in both.output.splitlines() if line.startswith("training with what")]
    assert lines == [
        "training with what loss 'minimax' recommends: ema=False, lr_d=0.0005, lr_g=0.0005 (a flag overrides any "
        "of them)"
    ]
    given = run("train", "--gen", "mlp", "--lr-g", "1e-3", *args, "--out", tmp_path / "b")
    assert "training with what generator 'mlp' recommends: ema=False, lr_d=0.0005 (" in given.output
    default = run("train", "--gen", "dcgan", *args, "--out", tmp_path / "c")
    quiet = run("train", "--gen", "mlp", *args, "--quiet", "--out", tmp_path / "d")
    assert "recommends" not in default.output and "recommends" not in quiet.output
