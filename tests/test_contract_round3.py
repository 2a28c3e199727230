"""The plugin contract, round 3: every plugin mistake blamed on the plugin that made it, at any batch size, dtype or
moment.

A package of mistakes a new author makes (float64 from numpy, ``.detach()`` in the wrong place, an in-place op, a
signature from an old version, ``sys.exit()``, a NaN from step 3) is installed as a real distribution, ``oops-gan``,
and ``gankit train`` is run on each: one line naming the plugin and its distribution, exit code 2, no traceback, and
the traceback in ``RUN/error.log`` once the run folder exists.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from cli_helpers import assert_user_error, run
from test_registry import installed, make_distribution

from gankit.errors import PluginError
from gankit.registry import Registry, registry

DIST = "oops-gan"
ORIGIN = "from 'oops-gan' 1.2.3"

MISTAKES = '''
import sys
import time

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator

from gankit.interfaces import (
    Dataset, Discriminator, Generator, GeneratorOptions, ImageData, Loss, LossOptions, Tracker,
)


class Flat(Generator):
    """A working generator the mistakes below depart from."""

    def __init__(self, options):
        super().__init__(options)
        c, h, w = self.image_shape
        self.net = torch.nn.Linear(self.latent_dim, c * h * w)

    def forward(self, latent, labels=None):
        return self.net(latent).tanh().view(-1, *self.image_shape)


class Critic(Discriminator):
    """A working discriminator the mistakes below depart from."""

    def __init__(self, options):
        super().__init__(options)
        c, h, w = self.image_shape
        self.net = torch.nn.Linear(c * h * w, 1)

    def forward(self, images, labels=None):
        return self.net(images.flatten(1)).flatten()


class NonSat(Loss):
    """The non-saturating loss, written out; the loss mistakes below depart from it."""

    def discriminator_loss(self, inputs):
        return F.softplus(-inputs.real_logits).mean() + F.softplus(inputs.fake_logits).mean()

    def generator_loss(self, inputs):
        return F.softplus(-inputs.fake_logits).mean()


# -- 1. the wrong plugin blamed ----------------------------------------------------------------------------------

class Double(Flat):
    def forward(self, latent, labels=None):
        return super().forward(latent, labels).double()  # numpy gives float64


class Half(Flat):
    def forward(self, latent, labels=None):
        return super().forward(latent, labels).half()


class FirstTwo(Flat):
    def forward(self, latent, labels=None):
        return super().forward(latent, labels)[:2]  # right for 2 latents only


class TwoLogits(Critic):
    def forward(self, images, labels=None):
        return super().forward(images, labels)[:2]  # right for 2 images only


def _data(shape):
    count = shape[0]
    return ImageData(
        images=torch.zeros(shape, dtype=torch.uint8), labels=torch.zeros(count, dtype=torch.int64), num_classes=0
    )


class Wide(Dataset):
    def load(self, split="train"):
        return _data((64, 1, 8, 12))


class ChannelsLast(Dataset):
    def load(self, split="train"):
        return _data((64, 8, 8, 1))


class Few(Dataset):
    def load(self, split="train"):
        return _data((8, 1, 8, 8))


# -- 2. tracebacks -----------------------------------------------------------------------------------------------

class DetachedG(Flat):
    def forward(self, latent, labels=None):
        return super().forward(latent, labels).detach()


class DetachedD(Critic):
    def forward(self, images, labels=None):
        return super().forward(images, labels).detach()


class InPlaceG(Flat):
    def forward(self, latent, labels=None):
        images = self.net(latent).tanh()
        images.mul_(0.5)  # overwrites the output tanh's backward needs
        return images.view(-1, *self.image_shape)


class ScalesInput(Critic):
    def forward(self, images, labels=None):
        images.mul_(0.5)
        return super().forward(images, labels)


class NoGradLoss(NonSat):
    def generator_loss(self, inputs):
        return F.softplus(-inputs.fake_logits).mean().detach()


class ClampsFakes(NonSat):
    def generator_loss(self, inputs):
        inputs.fake_images.clamp_(-0.9, 0.9)
        return super().generator_loss(inputs)


class ScalesReals(NonSat):
    def discriminator_loss(self, inputs):
        inputs.real_images.mul_(0.5)
        return super().discriminator_loss(inputs)


class SigmoidInPlace(NonSat):
    def discriminator_loss(self, inputs):
        real, fake = inputs.real_logits.sigmoid_(), inputs.fake_logits.sigmoid_()
        return -(real.log().mean() + (1 - fake).log().mean())


class OldSignature(NonSat):
    def generator_loss(self, inputs, step):
        return super().generator_loss(inputs)


class PlainOptions(Flat):
    class Options:
        width = 8


# -- 3. sys.exit -------------------------------------------------------------------------------------------------

class ExitsG(Flat):
    def forward(self, latent, labels=None):
        self.calls = getattr(self, "calls", 0) + self.training
        if self.calls > 1:  # in the second step
            sys.exit()
        return super().forward(latent, labels)


class ExitsLoss(NonSat):
    def discriminator_loss(self, inputs):
        if inputs.step == 1:
            sys.exit(3)
        return super().discriminator_loss(inputs)


class ExitsTracker(Tracker):
    def start(self, run_dir, hyperparameters, *, resumed_at_step):
        pass

    def log_scalars(self, step, scalars):
        sys.exit(1)


class SlowTracker(Tracker):
    def start(self, run_dir, hyperparameters, *, resumed_at_step):
        self.steps = []
        self.run_dir = run_dir

    def log_scalars(self, step, scalars):
        time.sleep(1.0)
        self.steps.append(step)

    def close(self):
        (self.run_dir / "slow.json").write_text(str(self.steps))


# -- 4. non-finite values ----------------------------------------------------------------------------------------

class NaNFromStep3(NonSat):
    def discriminator_loss(self, inputs):
        loss = super().discriminator_loss(inputs)
        return loss * float("nan") if inputs.step >= 2 else loss


class InfLogits(Critic):
    """Infinite logits from the third step on (three forwards a step, in train mode; the check runs in eval mode)."""

    def forward(self, images, labels=None):
        self.calls = getattr(self, "calls", 0) + self.training
        logits = super().forward(images, labels)
        return logits + float("inf") if self.calls > 6 else logits


# -- 5. quiet acceptance -----------------------------------------------------------------------------------------

class BadDefaultOptions(GeneratorOptions):
    width: int = Field(0, ge=1, description="Hidden units.")


class BadDefault(Flat):
    Options = BadDefaultOptions


class OddOptions(LossOptions):
    interval: int = Field(3, description="Steps between penalties.")

    @field_validator("interval")
    @classmethod
    def _even(cls, interval):
        if interval % 2:
            raise ValueError("interval must be even")
        return interval


class OddDefault(NonSat):
    Options = OddOptions


class OldApi(NonSat):
    api_version = 1
    generator_needs_real_logits = True


class StringMetrics(NonSat):
    metric_names = ("gap")

    def discriminator_loss(self, inputs):
        inputs.report("gap", inputs.real_logits.mean() - inputs.fake_logits.mean())
        return super().discriminator_loss(inputs)


class UndeclaredRealLogits(NonSat):
    def generator_loss(self, inputs):
        return F.softplus(-(inputs.fake_logits - inputs.real_logits.mean())).mean()


class FloatMetric(NonSat):
    metric_names = ("gap",)

    def discriminator_loss(self, inputs):
        inputs.report("gap", (inputs.real_logits.mean() - inputs.fake_logits.mean()).detach().item())
        return super().discriminator_loss(inputs)
'''

GENERATORS = {
    "flat": "Flat", "double": "Double", "half": "Half", "first-two": "FirstTwo", "detached": "DetachedG",
    "plain-options": "PlainOptions", "exits": "ExitsG", "bad-default": "BadDefault", "mlp": "Flat",
    "in-place": "InPlaceG",
}  # fmt: skip
ENTRY_POINTS = {
    "gankit.generators": {name: f"oops_gan:{cls}" for name, cls in GENERATORS.items()},
    "gankit.discriminators": {
        name: f"oops_gan:{cls}"
        for name, cls in {
            "critic": "Critic",
            "two-logits": "TwoLogits",
            "detached": "DetachedD",
            "inf": "InfLogits",
            "scales-input": "ScalesInput",
        }.items()
    },
    "gankit.datasets": {"wide": "oops_gan:Wide", "channels-last": "oops_gan:ChannelsLast", "few": "oops_gan:Few"},
    "gankit.losses": {
        name: f"oops_gan:{cls}"
        for name, cls in {
            "nonsat2": "NonSat",
            "no-grad": "NoGradLoss",
            "clamps-fakes": "ClampsFakes",
            "scales-reals": "ScalesReals",
            "sigmoid-in-place": "SigmoidInPlace",
            "old-signature": "OldSignature",
            "exits": "ExitsLoss",
            "nan-from-3": "NaNFromStep3",
            "odd-default": "OddDefault",
            "old-api": "OldApi",
            "string-metrics": "StringMetrics",
            "undeclared-real-logits": "UndeclaredRealLogits",
            "float-metric": "FloatMetric",
        }.items()
    },
    "gankit.trackers": {"exits": "oops_gan:ExitsTracker", "slow": "oops_gan:SlowTracker"},
}


@pytest.fixture(scope="module")
def oops_gan(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """``oops-gan`` 1.2.3, installed as a real distribution: its dist-info and module on ``sys.path``."""
    with installed(tmp_path_factory.mktemp("oops-gan-site"), DIST, ENTRY_POINTS, {"oops_gan": MISTAKES}) as site:
        yield site


def train_args(tmp_path: Path, *args: str) -> list[str]:
    """``gankit train`` on 8x8 fake data with the package's working plugins, 3 steps of 16, ``args`` overriding."""
    defaults = {"--gen": "flat", "--disc": "critic", "--dataset": "fake", "--loss": "nonsat2", "--log-every": "50"}
    given = dict(zip(args[::2], args[1::2], strict=True))
    chosen = [part for flag, value in {**defaults, **given}.items() for part in (flag, value)]
    small = ["--data-opt", "size=64", "--data-opt", "image_size=8"] if given.get("--dataset", "fake") == "fake" else []
    small += ["--batch-size", "16", "--max-steps", "3", "--sample-count", "4"]
    return ["train", *chosen, *small, "--device", "cpu", "--quiet", "--out", str(tmp_path / "run")]


def test_the_working_plugins_of_the_package_train(oops_gan: Path, tmp_path: Path) -> None:
    result = run(*train_args(tmp_path))
    assert result.exit_code == 0, result.output


# -- 1. the plugin that made the mistake is blamed, at the training batch size and dtype --------------------------


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--gen", "double"], ["generator 'double'", "torch.float64", "float32"]),
        (["--gen", "half"], ["generator 'half'", "torch.float16", "float32"]),
        (["--gen", "first-two"], ["generator 'first-two'", "(2, 1, 8, 8) for 16 latents", "batch size"]),
        (["--disc", "two-logits"], ["discriminator 'two-logits'", "shape (2,) for 16 images", "batch size"]),
        (["--dataset", "wide"], ["dataset 'wide'", "(64, 1, 8, 12)", "square"]),
        (["--dataset", "channels-last"], ["dataset 'channels-last'", "(64, 8, 8, 1)", "permute(0, 3, 1, 2)"]),
        (["--dataset", "few"], ["dataset 'few'", "8 images", "--batch-size"]),
    ],
)
def test_the_plugin_that_made_the_mistake_is_named_before_the_first_step(
    oops_gan: Path, tmp_path: Path, args: list[str], fragments: list[str]
) -> None:
    result = run(*train_args(tmp_path, *args))
    assert_user_error(result, ORIGIN, *fragments)
    assert not (tmp_path / "run").exists()  # refused before anything was written


# -- 2. autograd's errors and a wrong declaration, blamed on the plugin ------------------------------------------


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--gen", "detached"], ["generator 'detached'", "do not require grad", ".detach()"]),
        (["--disc", "detached"], ["discriminator 'detached'", "do not require grad", ".detach()"]),
        (["--loss", "no-grad"], ["loss 'no-grad'", "generator_loss", "does not require grad"]),
        (["--loss", "clamps-fakes"], ["loss 'clamps-fakes'", "inputs.fake_images", "in place"]),
        (["--loss", "scales-reals"], ["loss 'scales-reals'", "inputs.real_images", "in place"]),
        (["--loss", "sigmoid-in-place"], ["loss 'sigmoid-in-place'", "inputs.real_logits", "in place"]),
        (["--gen", "in-place"], ["generator 'in-place'", "backward", "inplace operation", "x.mul(2)"]),
        (["--disc", "scales-input"], ["discriminator 'scales-input'", "images it was given in place"]),
    ],
)
def test_an_autograd_error_names_the_plugin_whose_output_caused_it(
    oops_gan: Path, tmp_path: Path, args: list[str], fragments: list[str]
) -> None:
    result = run(*train_args(tmp_path, *args))
    log = tmp_path / "run" / "error.log"
    assert_user_error(result, ORIGIN, *fragments, str(log))
    assert "Traceback" in log.read_text()


@pytest.mark.parametrize(
    ("kind", "name", "fragments"),
    [
        ("loss", "old-signature", ["generator_loss(self, inputs, step)", "generator_loss(inputs)"]),
        ("generator", "plain-options", ["Options", "GeneratorOptions"]),
        ("generator", "bad-default", ["width", "default", "0", "greater than or equal to 1"]),
        ("loss", "odd-default", ["interval", "default", "3", "interval must be even"]),
        ("loss", "old-api", ["api_version = 1", "generator_needs_real_logits", "api_version = 2"]),
        ("loss", "string-metrics", ["metric_names", "'gap'", '("gap",)']),
    ],
)
def test_a_wrong_declaration_is_refused_when_the_plugin_loads(
    oops_gan: Path, tmp_path: Path, kind: str, name: str, fragments: list[str]
) -> None:
    status = Registry().status(registry.entry(kind, name))
    assert status.startswith(f"{kind} '{name}' {ORIGIN}"), status
    for fragment in fragments:
        assert fragment in status, status
    flag = {"generator": "--gen", "loss": "--loss"}[kind]
    result = run(*train_args(tmp_path, flag, name))
    assert_user_error(result, f"{kind} '{name}' {ORIGIN}", *fragments)
    assert not (tmp_path / "run").exists()


# -- 3. sys.exit() in plugin code is contained -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--gen", "exits"], ["generator 'exits'", "SystemExit", "sys.exit()"]),
        (["--loss", "exits"], ["loss 'exits'", "SystemExit: 3", "sys.exit()"]),
    ],
)
def test_sys_exit_in_a_step_is_one_line_naming_the_plugin(
    oops_gan: Path, tmp_path: Path, args: list[str], fragments: list[str]
) -> None:
    result = run(*train_args(tmp_path, *args))
    assert_user_error(result, ORIGIN, *fragments)
    debug = run("--debug", *train_args(tmp_path / "again", *args))
    assert debug.exit_code == 2 and "Traceback" in debug.output and "sys.exit(" in debug.output


def test_a_tracker_that_calls_sys_exit_is_one_warning_even_under_quiet(
    oops_gan: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    result = run(*train_args(tmp_path, "--tracker", "exits", "--log-every", "1"))
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "tracker 'exits'" in warnings[0] and "SystemExit" in warnings[0], result.output
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 3


# -- 4. non-finite values name the first term and its plugin -----------------------------------------------------


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--loss", "nan-from-3"], ["loss 'nan-from-3'", "its discriminator_loss (NaN) at step 3"]),
        (["--disc", "inf"], ["discriminator 'inf'", "its logits on real images (inf) at step 3"]),
    ],
)
def test_a_non_finite_value_names_the_first_term_and_its_plugin(
    oops_gan: Path, tmp_path: Path, args: list[str], fragments: list[str]
) -> None:
    result = run(*train_args(tmp_path, *args, "--max-steps", "3"))
    assert_user_error(result, ORIGIN, *fragments)
    assert "checkpoint" not in result.output  # there is none to keep: the run had not written one


# -- 5. what was quietly accepted --------------------------------------------------------------------------------


def test_real_logits_without_the_flag_say_which_flag_to_set(oops_gan: Path, tmp_path: Path) -> None:
    result = run(*train_args(tmp_path, "--loss", "undeclared-real-logits"))
    assert_user_error(result, "loss 'undeclared-real-logits'", ORIGIN, "generator_needs_real_logits = True")


def test_a_metric_reported_as_a_float_says_to_report_the_tensor(oops_gan: Path, tmp_path: Path) -> None:
    result = run(*train_args(tmp_path, "--loss", "float-metric"))
    assert_user_error(result, "loss 'float-metric'", ORIGIN, "'gap'", "float", "tensor")


def test_a_slow_tracker_is_warned_about_once_and_does_not_hold_training_up(
    oops_gan: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gankit.run import _tracking

    monkeypatch.setattr(_tracking, "SLOW_CALL_S", 0.3)
    started = time.perf_counter()
    result = run(*train_args(tmp_path, "--tracker", "slow", "--log-every", "1"))
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "tracker 'slow'" in warnings[0] and "log_scalars" in warnings[0], result.output
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["elapsed_s"] < 1.0  # three log points, a second each in the tracker: not training time
    assert (tmp_path / "run" / "slow.json").read_text() == "[1, 2, 3]"  # every line still reached it, in order
    assert time.perf_counter() - started < 30


# -- also found --------------------------------------------------------------------------------------------------


def test_a_qualified_generator_without_disc_falls_back_to_the_plain_discriminator(
    oops_gan: Path, tmp_path: Path
) -> None:
    """oops-gan provides a generator 'mlp' but no discriminator 'mlp': --disc defaults to gankit's."""
    result = run(*train_args(tmp_path, "--gen", "oops-gan:mlp", "--disc", "mlp"))
    assert result.exit_code == 0, result.output
    args = [arg for arg in train_args(tmp_path / "b", "--gen", "oops-gan:mlp")]
    index = args.index("--disc")
    del args[index : index + 2]
    result = run(*args)
    assert result.exit_code == 0, result.output
    recorded = json.loads((tmp_path / "b" / "run" / "config.json").read_text())
    assert recorded["discriminator"] == "mlp"


def test_a_qualified_generator_with_no_namesake_discriminator_says_disc_defaults_to_it(
    oops_gan: Path, tmp_path: Path
) -> None:
    args = train_args(tmp_path, "--gen", "oops-gan:double")
    index = args.index("--disc")
    del args[index : index + 2]
    result = run(*args)
    assert_user_error(result, "--disc", "defaults to the generator's name", "double", "--disc NAME")


def test_the_check_at_the_training_batch_leaves_training_bit_identical(
    oops_gan: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same seed gives the same weights whether or not the models were checked first (dropout, BatchNorm)."""
    from gankit.run import Trainer, _trainer, assemble, build_config, load_data, resolve_precision

    cpu = torch.device("cpu")
    values = {"generator": "gankit:mlp", "discriminator": "gankit:mlp", "loss": "nonsat2", "dataset": "fake"}
    values |= {"dataset_options": {"size": 64, "image_size": 8}, "batch_size": 16, "device": "cpu"}
    config = build_config({**values, "generator_options": {"hidden": 16}, "discriminator_options": {"hidden": 16}})

    def two_steps() -> dict[str, torch.Tensor]:
        torch.manual_seed(0)
        trainer = Trainer(config, assemble(config, load_data(config)), cpu, resolve_precision("off", cpu))
        assert trainer.generator.training and trainer.discriminator.training
        order = trainer.batches.order(0)
        for index in range(2):
            trainer.train_step([trainer.batches.batch(order, index)])
            trainer.after_step()
        return {
            **trainer.generator.state_dict(),
            **{f"d.{k}": v for k, v in trainer.discriminator.state_dict().items()},
        }

    checked = two_steps()
    monkeypatch.setattr(_trainer, "check_training_batch", lambda *args, **kwargs: None)
    unchecked = two_steps()
    assert checked.keys() == unchecked.keys()
    for key, value in checked.items():
        assert torch.equal(value, unchecked[key]), key


def test_plugin_errors_are_plugin_errors(oops_gan: Path) -> None:
    with pytest.raises(PluginError, match="generator_loss"):
        Registry().load("loss", "old-signature")


def test_a_run_that_failed_at_step_1_leaves_its_traceback_and_its_folder_can_be_taken_over(
    oops_gan: Path, tmp_path: Path
) -> None:
    failed = run(*train_args(tmp_path, "--loss", "no-grad"))
    assert_user_error(failed, "loss 'no-grad'", "error.log")
    assert "Traceback" in (tmp_path / "run" / "error.log").read_text()
    (tmp_path / "run" / "samples").rmdir()  # a run killed before it made samples/ leaves none
    fixed = run(*train_args(tmp_path))  # the same --out, the mistake fixed
    assert fixed.exit_code == 0, fixed.output
    assert "takes it over" in fixed.output and "stopped before its first checkpoint" in fixed.output
    assert not (tmp_path / "run" / "error.log").exists() and (tmp_path / "run" / "checkpoint.safetensors").is_file()
    (tmp_path / "run" / "notes.txt").write_text("mine")  # a finished run, and something the user made: refused
    again = run(*train_args(tmp_path))
    assert_user_error(again, "already exists and is not empty")


def test_a_run_resumes_after_another_package_starts_providing_one_of_its_names(
    oops_gan: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """config.json records the DIST:NAME each name resolved to; --resume keeps to it when the plain name clashes."""
    folder = tmp_path / "run"
    assert run(*train_args(tmp_path, "--loss", "nonsat", "--max-steps", "2")).exit_code == 0
    recorded = json.loads((folder / "config.json").read_text())
    assert recorded["loss"] == "nonsat" and recorded["resolved_plugins"]["loss"] == "gankit:nonsat"
    assert recorded["resolved_plugins"]["generator"] == "oops-gan:flat"
    site = tmp_path / "clash-site"
    make_distribution(site, "clash-gan", {"gankit.losses": {"nonsat": "clash_gan:Other"}}, {"clash_gan": CLASH})
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    try:
        ambiguous = run(*train_args(tmp_path / "new", "--loss", "nonsat"))
        assert_user_error(ambiguous, "provided by both", "clash-gan:nonsat or gankit:nonsat")
        resume = ["train", "--resume", str(folder), "--quiet"]
        assert run(*resume, "--max-steps", "3").exit_code == 0  # the recorded plain name: gankit's, as at the start
        same = run(*resume, "--max-steps", "4", "--loss", "gankit:nonsat")  # the qualified name of the same plugin
        assert same.exit_code == 0, same.output
        assert json.loads((folder / "metrics.jsonl").read_text().splitlines()[-1])["step"] == 4
        other = run(*resume, "--max-steps", "5", "--loss", "clash-gan:nonsat")
        assert_user_error(other, "loss was", "clash-gan:nonsat")
    finally:
        sys.modules.pop("clash_gan", None)


CLASH = """
from oops_gan import NonSat as Other
"""


@pytest.mark.parametrize("bad_step", [3, 64, 65, 130, 199])
def test_the_window_finds_the_first_non_finite_term_across_its_folds(bad_step: int) -> None:
    """Rows are folded every HISTORY_ROWS steps on the device; the first bad step and term survive every fold."""
    from gankit.run._distributed import Ranks
    from gankit.run._stats import StatWindow, StepStats

    window = StatWindow(torch.device("cpu"), ("gap",))
    width = window.history.shape[1]
    for step in range(1, 201):
        values = torch.ones(width)
        if step >= bad_step:  # the metric first (index 4), then everything downstream of it
            values[4] = float("inf")
            values[1] = float("nan") if step > bad_step else 1.0
        window.add(StepStats(values, (True,), step=step))
    window.read(Ranks())
    first = window.first_non_finite
    assert first is not None and (first.step, first.term, first.kind, first.value) == (
        bad_step,
        "metric 'gap'",
        "loss",
        float("inf"),
    )
    window.reset()
    window.add(StepStats(torch.ones(width), (True,), step=201))
    window.read(Ranks())
    assert window.first_non_finite is None
