"""The loss side of the plugin contract: what a loss declares (real logits in the generator step, lazy
regularisation), what it reports (named metrics on the device, shown at log points), the D statistics every loss
shares, and the loss's own mistakes named in one line."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from cli_helpers import assert_user_error, run
from plugins_for_tests import LazyR1NonSat, R1NonSat, RelativisticAverage, UndeclaredR1, VectorLoss
from rich.console import Console
from test_registry import installed
from test_training import fake_config
from torch import Tensor, nn

from gankit.errors import PluginError
from gankit.interfaces import Discriminator, DiscriminatorInputs, DiscriminatorOptions, GeneratorInputs, Loss
from gankit.pictures import loss_figure
from gankit.registry import registry
from gankit.run import (
    HealthMonitor,
    RichReporter,
    TrainConfig,
    Trainer,
    assemble,
    load_data,
    logits_leaving_buffers,
    resolve_precision,
    train,
)

CPU = torch.device("cpu")


class NormCritic(Discriminator):
    """A discriminator with BatchNorm and a spectral-normalised layer: both have buffers a forward moves."""

    def __init__(self, options: DiscriminatorOptions) -> None:
        super().__init__(options)
        size = options.channels * options.image_size * options.image_size
        self.hidden = nn.utils.parametrizations.spectral_norm(nn.Linear(size, 8))
        self.norm = nn.BatchNorm1d(8)
        self.out = nn.Linear(8, 1)

    def forward(self, images: Tensor, labels: Tensor | None = None) -> Tensor:
        return self.out(torch.relu(self.norm(self.hidden(images.flatten(1))))).squeeze(1)


class ReportsEngineField(LazyR1NonSat):
    metric_names = ("d_loss",)


class ReportsUndeclared(LazyR1NonSat):
    metric_names = ()


TEST_PLUGINS: dict[tuple[str, str], type] = {
    ("discriminator", "norm-critic"): NormCritic,
    ("loss", "lazy-r1"): LazyR1NonSat,
    ("loss", "ragan"): RelativisticAverage,
    ("loss", "engine-field"): ReportsEngineField,
    ("loss", "undeclared-metric"): ReportsUndeclared,
}


@pytest.fixture(autouse=True)
def registered() -> Iterator[None]:
    for (kind, name), cls in TEST_PLUGINS.items():
        registry.register(kind, name, cls)
    try:
        yield
    finally:
        for kind, name in TEST_PLUGINS:
            registry.unregister(kind, name)


def config(tmp_path: Path, **overrides: Any) -> TrainConfig:
    """``test_training``'s fake run, smaller, against the test critic (whose BatchNorm the tests watch)."""
    small: dict[str, Any] = {"discriminator": "norm-critic", "generator_options": {"hidden": 8}, "image_size": 8}
    small |= {"batch_size": 8, "max_steps": 8, "sample_count": 4}
    return fake_config(tmp_path, **{**small, **overrides})  # type: ignore[no-any-return]


def trainer_for(cfg: TrainConfig) -> Trainer:
    torch.manual_seed(0)
    return Trainer(cfg, assemble(cfg, load_data(cfg)), CPU, resolve_precision("off", CPU))


def steps(trainer: Trainer, count: int) -> None:
    order = trainer.batches.order(0)
    for index in range(count):
        trainer.train_step([trainer.batches.batch(order, index)])
        trainer.after_step()


def batches_tracked(model: nn.Module) -> int:
    return sum(int(m.num_batches_tracked) for m in model.modules() if isinstance(m, nn.BatchNorm1d))


# -- real logits in the generator step ---------------------------------------------------------------------------


@pytest.mark.parametrize(("loss", "forwards"), [("nonsat", 3), ("ragan", 3)])
def test_batchnorm_moves_once_per_forward_the_step_needs(tmp_path: Path, loss: str, forwards: int) -> None:
    """Real and fake in D's update, fake in G's: three; the relativistic loss's real logits add none."""
    trainer = trainer_for(config(tmp_path, loss=loss))
    u = trainer.discriminator.hidden.parametrizations.weight[0]._u.clone()
    steps(trainer, 2)
    assert batches_tracked(trainer.discriminator) == 2 * forwards
    # spectral norm's power iteration ran once per forward too (one iteration each): u moved, and the same for both
    assert not torch.equal(u, trainer.discriminator.hidden.parametrizations.weight[0]._u)


class AsksForRealLogits(LazyR1NonSat):
    """The non-saturating loss (no R1: interval 1000 from step 1) asking for real logits it does not use."""

    generator_needs_real_logits = True


def test_asking_for_real_logits_changes_nothing_else(tmp_path: Path) -> None:
    """Same loss with and without the flag: D's buffers (BatchNorm, spectral norm) and weights end identical."""
    registry.register("loss", "asks", AsksForRealLogits)
    try:
        states = []
        for loss in ("lazy-r1", "asks"):
            trainer = trainer_for(config(tmp_path, loss=loss, loss_options={"interval": 1000, "gamma": 0.0}))
            steps(trainer, 3)
            states.append(trainer.discriminator.state_dict())
    finally:
        registry.unregister("loss", "asks")
    for name, value in states[0].items():
        assert torch.equal(value, states[1][name]), name


class Capturing(RelativisticAverage):
    """Keeps what the generator step was given."""

    seen: ClassVar[list[GeneratorInputs]] = []

    def generator_loss(self, inputs: GeneratorInputs) -> Tensor:
        type(self).seen.append(inputs)
        return super().generator_loss(inputs)


def test_relativistic_loss_reads_real_logits_of_the_updated_discriminator(tmp_path: Path) -> None:
    registry.register("loss", "ragan-capture", Capturing)
    try:
        trainer = trainer_for(config(tmp_path, loss="ragan-capture"))
        Capturing.seen.clear()
        steps(trainer, 1)
    finally:
        registry.unregister("loss", "ragan-capture")
    (inputs,) = Capturing.seen
    assert inputs.real_logits is not None and inputs.real_logits.shape == (8,)
    assert not inputs.real_logits.requires_grad
    # the same D as the fake logits (after its update), in train mode: recomputing gives the same numbers
    expected = logits_leaving_buffers(trainer.discriminator, inputs.real_images, None)
    assert torch.allclose(inputs.real_logits, expected)


def test_logits_leaving_buffers_changes_no_buffer() -> None:
    critic = NormCritic(DiscriminatorOptions(image_size=4))
    before = {name: buffer.clone() for name, buffer in critic.named_buffers()}
    logits = logits_leaving_buffers(critic, torch.randn(6, 1, 4, 4), None)
    assert logits.shape == (6,)
    for name, buffer in critic.named_buffers():
        assert torch.equal(buffer, before[name]), name
    critic(torch.randn(6, 1, 4, 4))  # an ordinary train-mode forward does move them
    assert int(critic.norm.num_batches_tracked) == 1


def test_other_losses_get_no_real_logits(tmp_path: Path) -> None:
    assert not Loss.generator_needs_real_logits and RelativisticAverage.generator_needs_real_logits


# -- lazy regularisation -----------------------------------------------------------------------------------------


def test_lazy_r1_runs_every_k_steps_with_grad_on_real_images_only_then(tmp_path: Path) -> None:
    trainer = trainer_for(config(tmp_path, loss="lazy-r1", loss_options={"interval": 4}))
    loss = trainer.loss
    assert isinstance(loss, LazyR1NonSat)
    steps(trainer, 8)
    assert loss.penalised_steps == [0, 4]
    assert loss.real_grad_steps == [0, 4]


def test_lazy_penalty_is_scaled_by_the_interval(tmp_path: Path) -> None:
    """Step 0 from the same start with interval 4 and 1: the D losses differ by (4 - 1) x gamma / 2 x R1 exactly."""
    first = []
    for interval in (4, 1):
        trainer = trainer_for(config(tmp_path, loss="lazy-r1", loss_options={"interval": interval, "gamma": 2.0}))
        stats = trainer.train_step([trainer.batches.batch(trainer.batches.order(0), 0)])
        assert stats.reported == (True,)
        first.append(stats.values)
    (d_loss_4, r1_4), (d_loss_1, r1_1) = ((values[0], values[4]) for values in first)
    assert r1_4 > 0 and torch.equal(r1_4, r1_1)  # the metric is the unscaled penalty
    assert (d_loss_4 - d_loss_1).item() == pytest.approx(3 * r1_4.item(), rel=1e-5)
    trainer.after_step()
    assert trainer.train_step([trainer.batches.batch(trainer.batches.order(0), 1)]).reported == (True,)


def test_interval_must_be_a_positive_integer(tmp_path: Path) -> None:
    class Broken(LazyR1NonSat):
        regularization_interval = 0  # type: ignore[assignment]

    registry.register("loss", "broken-interval", Broken)
    try:
        with pytest.raises(PluginError, match="regularization_interval=0"):
            trainer_for(config(tmp_path, loss="broken-interval"))
    finally:
        registry.unregister("loss", "broken-interval")


# -- metrics a loss reports ----------------------------------------------------------------------------------------


def test_loss_metrics_reach_metrics_jsonl_the_progress_line_and_loss_png(tmp_path: Path) -> None:
    console = Console(file=io.StringIO(), width=300, force_terminal=True)
    reporter = RichReporter(console)
    cfg = config(tmp_path, loss="lazy-r1", loss_options={"interval": 4})
    result = train(cfg, reporter=reporter)
    lines = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    # log lines every 2 steps, R1 every 4: the lines of steps 2 and 6 cover a regularising step, 4 and 8 do not
    assert [line["step"] for line in lines] == [2, 4, 6, 8]
    assert ["r1_penalty" in line for line in lines] == [True, False, True, False]
    assert all(line["r1_penalty"] >= 0 for line in lines if "r1_penalty" in line)
    assert all({"d_real_logit", "d_fake_logit"} <= set(line) and "d_real" not in line for line in lines)
    shown = reporter.progress.tasks[0].fields["loss_metrics"]
    assert shown == f"r1_penalty {lines[2]['r1_penalty']:.3g}"  # the last value reported, kept on later lines
    assert "r1_penalty" in console.file.getvalue()  # type: ignore[attr-defined]
    assert (result.run_dir / "loss.png").is_file()
    figure = loss_figure(lines)
    labels = [[text.get_text() for text in axis.get_legend().get_texts()] for axis in figure.axes]
    assert labels == [["D loss", "G loss"], ["real", "fake"], ["r1_penalty"]]


def test_bce_losses_report_the_probability_view(tmp_path: Path) -> None:
    result = train(config(tmp_path, loss="nonsat", max_steps=2))
    line = json.loads((result.run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    assert 0 <= line["d_real"] <= 1 and 0 <= line["d_fake"] <= 1
    # the probabilities are the sigmoid of logits whose mean is logged: same side of one half
    assert (line["d_real"] > 0.5) == (line["d_real_logit"] > 0) or abs(line["d_real_logit"]) < 0.5


@pytest.mark.parametrize(
    ("loss", "fragment"),
    [("engine-field", "declares the metric 'd_loss'"), ("undeclared-metric", "reported the metric 'r1_penalty'")],
)
def test_metric_names_are_checked(tmp_path: Path, loss: str, fragment: str) -> None:
    with pytest.raises(PluginError, match=fragment) as raised:
        trainer = trainer_for(config(tmp_path, loss=loss, loss_options={"interval": 1}))
        steps(trainer, 1)
    assert f"loss '{loss}'" in str(raised.value)


def test_inputs_are_keyword_only() -> None:
    images = torch.zeros(2, 1, 4, 4)
    with pytest.raises(TypeError):
        GeneratorInputs(images, images, torch.zeros(2), None, NormCritic(DiscriminatorOptions()), 0)  # type: ignore[misc]
    inputs = DiscriminatorInputs(
        real_images=images,
        fake_images=images,
        real_logits=torch.zeros(2),
        fake_logits=torch.zeros(2),
        labels=None,
        discriminator=NormCritic(DiscriminatorOptions(image_size=4)),
        step=0,
    )
    inputs.report("x", torch.ones((), requires_grad=True) * 2)
    assert inputs.metrics["x"].item() == 2 and not inputs.metrics["x"].requires_grad


# -- the health warning every loss can trigger ------------------------------------------------------------------


def line(step: int, **values: float) -> dict[str, float]:
    return {"step": step, "d_real_logit": 3.0, "d_fake_logit": -3.0, **values}


def test_overpowering_warning_fires_for_a_relativistic_loss() -> None:
    health = HealthMonitor(patience=3)
    warnings = [health.check(line(step, d_loss=0.004, g_loss=14.0)) for step in range(4)]
    assert [len(w) for w in warnings] == [0, 0, 1, 0]  # after 3 log lines, once
    assert "overpowering" in warnings[2][0] and "0.004" in warnings[2][0]


@pytest.mark.parametrize(
    "values",
    [
        {"d_loss": 1.2, "g_loss": 0.9},  # a healthy BCE run
        {"d_loss": -3.0, "g_loss": 40.0},  # a critic: its loss is a negative Wasserstein estimate
        {"d_loss": 0.3, "g_loss": -0.2},  # minimax: a negative G loss
    ],
)
def test_no_warning_for_healthy_or_signed_losses(values: dict[str, float]) -> None:
    health = HealthMonitor(patience=2)
    assert not any(health.check(line(step, **values)) for step in range(5))


def test_bce_probabilities_still_count() -> None:
    health = HealthMonitor(patience=2)
    pinned = {"d_loss": 0.05, "g_loss": -0.01, "d_real": 0.99, "d_fake": 0.01}  # minimax, D winning
    assert [len(health.check(line(step, **pinned))) for step in range(3)] == [0, 1, 0]


# -- the loss's mistakes, named in one line ----------------------------------------------------------------------

MISTAKES = """
from plugins_for_tests import UndeclaredR1, VectorLoss
"""

DIST = "sloppy-losses"


@pytest.fixture
def sloppy_losses(tmp_path: Path) -> Iterator[None]:
    """``sloppy-losses`` 1.2.3, installed as a real distribution: a vector loss and R1 without its flag."""
    entry_points = {"gankit.losses": {"vector": "sloppy_losses:VectorLoss", "r1-noflag": "sloppy_losses:UndeclaredR1"}}
    with installed(tmp_path / "site", DIST, entry_points, {"sloppy_losses": MISTAKES}):
        yield


@pytest.mark.parametrize(
    ("loss", "fragments"),
    [
        ("vector", ["loss 'vector' from 'sloppy-losses' 1.2.3", "shape (8,)", "discriminator_loss", ".mean()"]),
        ("r1-noflag", ["loss 'r1-noflag' from 'sloppy-losses' 1.2.3", "requires_real_grad = True"]),
    ],
)
def test_loss_mistakes_are_one_line_naming_the_loss(
    sloppy_losses: None, tmp_path: Path, loss: str, fragments: list[str]
) -> None:
    assert VectorLoss and UndeclaredR1  # the classes the distribution's module re-exports
    args = ["train", "--gen", "mlp", "--gen-opt", "hidden=8", "--disc-opt", "hidden=8", "--loss", loss]
    args += ["--dataset", "fake", "--data-opt", "size=64", "--batch-size", "8", "--max-steps", "2"]
    args += ["--sample-count", "4", "--device", "cpu", "--quiet", "--out", str(tmp_path / "run")]
    assert_user_error(run(*args), *fragments)


@pytest.mark.parametrize(("version", "loads"), [(1, True), (2, True), (0, False), (3, False)])
def test_api_versions_are_a_range(version: int, loads: bool) -> None:
    """Plugins written for API 1 still load: API 2 only added to the contract (and made the inputs keyword-only).
    A class that uses what API 2 added pins API 2 (tests/test_contract_round3.py)."""
    pinned = type("Pinned", (R1NonSat,), {"api_version": version})
    registry.register("loss", "pinned", pinned)
    try:
        if loads:
            assert registry.load("loss", "pinned") is pinned
        else:
            with pytest.raises(PluginError, match=f"API {version}, but this gankit speaks APIs 1 to 2"):
                registry.load("loss", "pinned")
    finally:
        registry.unregister("loss", "pinned")
