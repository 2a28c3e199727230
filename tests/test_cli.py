"""The command line through click's CliRunner: the happy paths and one clear line for each user mistake."""

from __future__ import annotations

import json
import re
from pathlib import Path

import click
import pytest
from cli_helpers import assert_user_error, run

from gankit.cli import main

FAKE = ["--dataset", "fake", "--data-opt", "size=64", "--batch-size", "16", "--device", "cpu", "--quiet"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "run"
    result = run("train", "--gen", "mlp", "--loss", "nonsat", *FAKE, "--epochs", "2", "--out", out)
    assert result.exit_code == 0, result.output
    return out


def every_command(group: click.Group = main, prefix: tuple[str, ...] = ()) -> list[list[str]]:
    """The group itself and every command registered on it, subcommands of subgroups included."""
    found = [list(prefix)]
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            found += every_command(command, (*prefix, name))
        else:
            found.append([*prefix, name])
    return found


@pytest.mark.parametrize("command", every_command(), ids=lambda command: " ".join(command) or "gankit")
def test_help_for_every_command(command: list[str]) -> None:
    result = run(*command, "--help")
    assert result.exit_code == 0 and "Usage:" in result.output


def test_train_help_documents_every_option() -> None:
    output = run("train", "--help").output
    for flag in (
        "--gen",
        "--disc",
        "--loss",
        "--epochs",
        "--max-steps",
        "--batch-size",
        "--lr-g",
        "--lr-d",
        "--betas",
        "--latent-dim",
        "--sample-count",
        "--image-size",
        "--seed",
        "--device",
        "--amp",
        "--out",
        "--gen-opt",
        "--disc-opt",
        "--loss-opt",
        "--config",
    ):
        assert flag in output, flag
    assert "[default: 0.001]" in " ".join(output.split())
    shown = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", output))
    assert not {"--latent-size", "--samples"} & shown  # the old spellings: still accepted, no longer shown


def test_old_flag_spellings_still_work(tmp_path: Path) -> None:
    out = tmp_path / "run"
    old = ["--latent-size", "7", "--samples", "4"]
    result = run("train", "--gen", "mlp", *FAKE, "--max-steps", "1", *old, "--out", out)
    assert result.exit_code == 0, result.output
    resolved = json.loads((out / "config.json").read_text())
    assert resolved["latent_dim"] == 7 and resolved["sample_count"] == 4
    assert resolved["generator_options"]["latent_dim"] == 7


def test_info_takes_the_flag_of_its_kind() -> None:
    shown = run("info", "discriminator", "mlp", "--disc-opt", "hidden=8").output
    assert run("info", "discriminator", "mlp", "--opt", "hidden=8").output == shown  # the old spelling
    assert "--opt" not in run("info", "--help").output
    assert_user_error(run("info", "discriminator", "mlp", "--gen-opt", "hidden=8"), "--gen-opt", "use --disc-opt")
    assert_user_error(run("info", "generator", "mlp", "--gen-opt", "widht=3"), "widht")


def test_train_writes_a_run_folder(trained_run: Path) -> None:
    assert (trained_run / "generator.safetensors").is_file()
    assert len(list((trained_run / "samples").glob("epoch_*.png"))) == 2


def test_sample_from_export_run_folder_and_checkpoint(trained_run: Path, tmp_path: Path) -> None:
    outputs = []
    for source in (trained_run / "generator.safetensors", trained_run, trained_run / "checkpoint.safetensors"):
        out = tmp_path / f"grid-{len(outputs)}.png"
        result = run("sample", source, "--n", "9", "--seed", "3", "--out", out)
        assert result.exit_code == 0, result.output
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1] == outputs[2]


def test_sample_refuses_to_overwrite(trained_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "mine.png"
    out.write_bytes(b"precious")
    assert_user_error(run("sample", trained_run, "--out", out), "already exists")
    assert out.read_bytes() == b"precious"


def test_export_from_checkpoint_matches_the_run_export(trained_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "exported.safetensors"
    assert run("export", trained_run, "--out", out).exit_code == 0
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    run("sample", out, "--out", a)
    run("sample", trained_run / "generator.safetensors", "--out", b)
    assert a.read_bytes() == b.read_bytes()
    assert_user_error(run("export", trained_run, "--out", out), "exists")


def test_plugins_table_lists_builtins() -> None:
    result = run("plugins")
    assert result.exit_code == 0
    for name in ("dcgan", "mlp", "nonsat", "minimax", "mnist", "fake"):
        assert name in result.output
    assert "error" not in result.output


def test_config_file_with_flag_override(tmp_path: Path) -> None:
    config = tmp_path / "run.toml"
    config.write_text('generator = "mlp"\nepochs = 3\nmax_steps = 5\n[generator_options]\nhidden = 32\n')
    out = tmp_path / "run"
    result = run("train", "--config", config, *FAKE, "--max-steps", "2", "--out", out)
    assert result.exit_code == 0, result.output
    resolved = json.loads((out / "config.json").read_text())
    assert resolved["max_steps"] == 2 and resolved["epochs"] == 3
    assert resolved["generator_options"]["hidden"] == 32


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--gen", "dcgn"], ["unknown generator 'dcgn'", "Did you mean 'dcgan'?"]),
        (["--loss", "hinge-nope"], ["unknown loss"]),
        (["--dataset", "mnits"], ["unknown dataset", "mnist"]),
        (["--gen", "mlp", "--disc", "nope"], ["unknown discriminator"]),
        (["--lr-g", "-1"], ["lr_g", "greater than 0"]),
        (["--batch-size", "0"], ["batch_size"]),
        (["--gen", "dcgan", "--image-size", "30"], ["image_size"]),
        (["--gen", "mlp", "--gen-opt", "widht=3"], ["widht"]),
        (["--gen", "mlp", "--gen-opt", "novalue"], ["KEY=VALUE"]),
        (["--gen", "mlp", "--disc-opt", "image_size=32"], ["images of shape (1, 28, 28)", "expects (1, 32, 32)"]),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, args: list[str], fragments: list[str]) -> None:
    out = tmp_path / "run"
    assert_user_error(run("train", *FAKE, "--max-steps", "1", "--out", out, *args), *fragments)


def test_malformed_toml_and_unknown_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("epochs = = 3\n")
    assert_user_error(run("train", "--config", bad), "not valid TOML")
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("epoch = 3\n")
    assert_user_error(run("train", "--config", unknown), "epoch", "Extra inputs are not permitted")
    assert_user_error(run("train", "--config", tmp_path / "missing.toml"), "does not exist")


def test_existing_output_folder_is_never_clobbered(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert_user_error(run("train", *FAKE, "--max-steps", "1", "--out", out), "already exists", "--overwrite")
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert run("train", *FAKE, "--max-steps", "1", "--out", out, "--overwrite").exit_code == 0
    assert (out / "notes.txt").read_text() == "mine"


def test_sample_from_a_file_that_is_not_an_export(tmp_path: Path) -> None:
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 100)
    assert_user_error(run("sample", junk, "--out", tmp_path / "x.png"))
    assert_user_error(run("sample", tmp_path / "missing.safetensors", "--out", tmp_path / "x.png"))
