"""``--resume`` appended to the command that started the run: equal values pass, a changed one is one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from cli_helpers import assert_user_error, run

from gankit.cli.train import command, flag_names
from gankit.files import read_checkpoint_metadata
from gankit.run import RESUMABLE

ORIGINAL = [
    "--gen", "mlp", "--loss", "nonsat", "--gen-opt", "hidden=16", "--disc-opt", "hidden=16", "--dataset", "fake",
    "--data-opt", "size=64", "--batch-size", "16", "--device", "cpu", "--quiet", "--seed", "3", "--lr-g", "0.0002",
    "--log-every", "1",
]  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run stopped after 2 of 4 steps by the command ORIGINAL --max-steps 2; tests that resume it copy it."""
    out = tmp_path_factory.mktemp("resume-command") / "run"
    result = run("train", *ORIGINAL, "--max-steps", "2", "--out", out)
    assert result.exit_code == 0, result.output
    return out


def step_of(run_dir: Path) -> int:
    return int(read_checkpoint_metadata(run_dir / "checkpoint.safetensors")["step"])


def copy_of(run_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run_dir, tmp_path / "run"))


def test_the_original_command_plus_resume_continues(trained: Path, tmp_path: Path) -> None:
    run_dir = copy_of(trained, tmp_path)
    result = run("train", *ORIGINAL, "--max-steps", "4", "--resume", run_dir)
    assert result.exit_code == 0, result.output
    assert step_of(run_dir) == 4
    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]


def test_equal_values_pass_after_normalisation(trained: Path, tmp_path: Path) -> None:
    run_dir = copy_of(trained, tmp_path)
    same: list[str | Path] = [
        "--out", run_dir, "--disc", "mlp", "--image-size", "28", "--latent-dim", "100", "--num-classes", "0",
        "--lr-g", "2e-4", "--betas", "0.5", "0.999", "--gen-opt", "hidden=16.0", "--gen-opt", "channels=1",
        "--data-opt", "seed=0", "--loss-opt", "label_smoothing=0",
    ]  # fmt: skip  # given now, unset or defaulted at the start: the same values all the same
    result = run("train", *ORIGINAL, *same, "--max-steps", "3", "--resume", run_dir)
    assert result.exit_code == 0, result.output
    assert step_of(run_dir) == 3


def test_a_config_file_with_the_recorded_values_passes(trained: Path, tmp_path: Path) -> None:
    run_dir = copy_of(trained, tmp_path)
    config = tmp_path / "run.toml"
    config.write_text('generator = "mlp"\nseed = 3\nmax_steps = 3\n[generator_options]\nhidden = 16\n')
    result = run("train", "--config", config, "--resume", run_dir, "--quiet")
    assert result.exit_code == 0, result.output
    assert step_of(run_dir) == 3


@pytest.mark.parametrize(
    ("changed", "message"),
    [
        (
            ["--seed", "4"],
            "--resume continues the run as configured: seed was 3, the command says 4; drop --seed or start a new run",
        ),
        (["--gen-opt", "hidden=32"], "generator option hidden was 16, the command says 32; drop --gen-opt hidden=32"),
        (["--data-opt", "size=65"], "dataset option size was 64, the command says 65; drop --data-opt size=65"),
        (["--image-size", "32"], "image_size was 28, the command says 32; drop --image-size"),
        (["--gen", "dcgan"], "generator was mlp, the command says dcgan; drop --gen"),
        (
            ["--lr-g", "0.001", "--ema"],
            "lr_g was 0.0002, the command says 0.001 (--lr-g); ema was false, the command says true (--ema)",
        ),
    ],
    ids=["seed", "gen-opt", "data-opt", "image-size", "gen", "two"],
)
def test_a_changed_value_is_refused_in_one_line(trained: Path, changed: list[str], message: str) -> None:
    before = (trained / "metrics.jsonl").read_text()
    result = run("train", *ORIGINAL, *changed, "--resume", trained)
    assert_user_error(result, message)
    assert step_of(trained) == 2 and (trained / "metrics.jsonl").read_text() == before


def test_another_out_and_a_changing_config_file_are_refused(trained: Path, tmp_path: Path) -> None:
    result = run("train", *ORIGINAL, "--out", tmp_path / "elsewhere", "--resume", trained)
    assert_user_error(result, f"out was {trained}, the command says {tmp_path / 'elsewhere'}; drop --out")
    config = tmp_path / "run.toml"
    config.write_text("seed = 5\n[generator_options]\nhidden = 8\n")
    result = run("train", "--config", config, "--resume", trained)
    assert_user_error(
        result, f"seed was 3, the command says 5 (seed from {config})", f"(hidden from [generator_options] of {config})"
    )
    run_dir = copy_of(trained, tmp_path)  # flags win over the file, key by key: then nothing changes
    result = run(
        "train",
        "--config",
        config,
        "--seed",
        "3",
        "--gen-opt",
        "hidden=16",
        "--max-steps",
        "3",
        "--resume",
        run_dir,
        "--quiet",
    )
    assert result.exit_code == 0, result.output
    assert step_of(run_dir) == 3


def test_the_help_lists_what_may_change() -> None:
    text = " ".join(run("train", "--help").output.split())
    assert "may repeat the run's values but not change them; these may change: --epochs, --max-steps" in text
    assert len(RESUMABLE) == text.split("these may change:")[1].split(".")[0].count("--")


def test_the_docs_name_what_may_change() -> None:
    text = (Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text(encoding="utf-8")
    section = text.split("### Resuming a run\n", 1)[1].split("\n#", 1)[0]
    names = flag_names(command)
    missing = [names[key] for key in RESUMABLE if f"`{names[key]}`" not in section]
    assert not missing, f"docs/cli.md's 'Resuming a run' does not name {missing}, which RESUMABLE lets change"
