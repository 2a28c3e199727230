"""The engine end to end on small data: artifacts, determinism, AMP paths, every built-in combination, loss plugins."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from plugins_for_tests import R1NonSat, WassersteinGP
from safetensors.torch import load_file

from gankit.registry import registry
from gankit.run import build_config, train


def fake_config(tmp_path: Path, **overrides: Any) -> Any:
    values: dict[str, Any] = {
        "generator": "mlp",
        "loss": "nonsat",
        "dataset": "fake",
        "dataset_options": {"size": 64},
        "batch_size": 16,
        "epochs": 2,
        "device": "cpu",
        "log_every": 2,
        "sample_count": 16,
        "out": tmp_path / "run",
    }
    values.update(overrides)
    return build_config(values)


def test_run_folder_holds_every_artifact(tmp_path: Path) -> None:
    result = train(fake_config(tmp_path))
    run = result.run_dir
    assert result.steps == 8 and result.epochs_completed == 2
    for name in (
        "config.json",
        "metrics.jsonl",
        "checkpoint.safetensors",
        "generator.safetensors",
        "loss.png",
        "samples.gif",
        "samples/epoch_000.png",
        "samples/epoch_001.png",
    ):
        assert (run / name).is_file(), name
    config = json.loads((run / "config.json").read_text())
    assert config["generator"] == "mlp" and config["discriminator"] == "mlp"
    assert config["generator_options"]["image_size"] == 28 and config["resolved_amp"] == "off"
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [2, 4, 6, 8]
    assert {"d_loss", "g_loss", "d_real", "d_fake", "images_per_sec", "peak_memory_mb"} <= set(lines[0])
    assert all(0 <= line["d_real"] <= 1 and 0 <= line["d_fake"] <= 1 for line in lines)


def test_same_seed_same_weights_other_seed_differs(tmp_path: Path) -> None:
    first = load_file(train(fake_config(tmp_path / "a")).export_path)
    second = load_file(train(fake_config(tmp_path / "b")).export_path)
    third = load_file(train(fake_config(tmp_path / "c", seed=1)).export_path)
    assert all(torch.equal(first[key], second[key]) for key in first)
    assert not all(torch.equal(first[key], third[key]) for key in first)


def test_max_steps_stops_mid_epoch(tmp_path: Path) -> None:
    result = train(fake_config(tmp_path, max_steps=3, epochs=5))
    assert result.steps == 3 and result.epochs_completed == 1
    assert (result.run_dir / "samples" / "epoch_000.png").is_file()


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_cpu_autocast_runs_the_cuda_code_path(tmp_path: Path, amp: str) -> None:
    narrow = {"width": 8}  # the same layers and code path as the full-width DCGAN, a fraction of the work
    options = {"generator_options": narrow, "discriminator_options": narrow}
    result = train(fake_config(tmp_path, generator="dcgan", amp=amp, max_steps=4, epochs=1, **options))
    config = json.loads((result.run_dir / "config.json").read_text())
    assert config["resolved_amp"] == amp
    metrics = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert all(torch.isfinite(torch.tensor([m["d_loss"], m["g_loss"]])).all() for m in metrics)
    exported = load_file(result.export_path)
    assert all(tensor.dtype in (torch.float32, torch.int64) for tensor in exported.values())


@pytest.mark.parametrize("generator", ["mlp", "dcgan"])
@pytest.mark.parametrize("loss", ["nonsat", "minimax"])
@pytest.mark.parametrize("size", [28, 64])
def test_every_builtin_combination_trains(tmp_path: Path, generator: str, loss: str, size: int) -> None:
    steps = {"max_steps": 2, "epochs": 1, "log_every": 1, "checkpoint_every": 1}  # keeps step 1's checkpoint too
    config = fake_config(tmp_path, generator=generator, loss=loss, image_size=size, batch_size=8, **steps)
    result = train(config)
    assert result.steps == 2
    after_one = load_file(result.run_dir / "checkpoints" / "step_000000001.safetensors")
    after_two = load_file(result.run_dir / "checkpoint.safetensors")
    weights = {
        model: [key for key in after_two if key.startswith(f"{model}/")] for model in ("generator", "discriminator")
    }
    assert weights["generator"] and weights["discriminator"]
    unchanged = [key for keys in weights.values() for key in keys if torch.equal(after_one[key], after_two[key])]
    assert not unchanged, f"step 2 left these as they were: {unchanged}"
    exported = load_file(result.export_path)  # the EMA of G where the recipe keeps one, else G
    ema = [key for key in after_two if key.startswith("ema/")]
    assert bool(ema) == config.ema == ((generator, loss) == ("dcgan", "nonsat"))  # MLP and minimax recommend none
    kept = ema or weights["generator"]
    assert all(torch.equal(exported[key.split("/", 1)[1]], after_two[key]) for key in kept)


@pytest.mark.parametrize(("name", "cls"), [("wgan-gp-engine-test", WassersteinGP), ("r1-engine-test", R1NonSat)])
def test_losses_needing_more_than_logits_train_without_engine_changes(tmp_path: Path, name: str, cls: type) -> None:
    registry.register("loss", name, cls)
    try:
        result = train(fake_config(tmp_path, loss=name, d_steps=2, max_steps=3, epochs=3))
    finally:
        registry.unregister("loss", name)
    metrics = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert result.steps == 3
    assert all(abs(m["d_loss"]) < 1e6 for m in metrics)


@pytest.mark.slow
def test_short_run_on_real_mnist_moves_the_losses(tmp_path: Path) -> None:
    config = build_config(
        {
            "generator": "dcgan",
            "loss": "nonsat",
            "dataset": "mnist",
            "batch_size": 64,
            "max_steps": 60,
            "epochs": 1,
            "device": "cpu",
            "log_every": 10,
            "out": tmp_path / "mnist",
            "sample_count": 16,
        }
    )
    result = train(config)
    metrics = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == 6
    d_losses = [m["d_loss"] for m in metrics]
    g_losses = [m["g_loss"] for m in metrics]
    assert max(d_losses) - min(d_losses) > 0.05 and max(g_losses) - min(g_losses) > 0.05
    assert metrics[-1]["d_real"] > metrics[-1]["d_fake"]


def test_ema_and_periodic_evaluation_keep_the_best_generator(tmp_path: Path) -> None:
    result = train(fake_config(tmp_path, ema=True, eval_every=3, eval_samples=200, max_steps=6, epochs=2))
    lines = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    scored = [line for line in lines if "eval/frechet_distance" in line]
    assert [line["step"] for line in scored] == [3, 6]
    assert {"eval/kid", "eval/precision", "eval/recall", "eval/class_score", "eval/modes_covered"} <= set(scored[0])
    assert (result.run_dir / "generator-best.safetensors").is_file()
    state = load_file(result.run_dir / "checkpoint.safetensors")
    assert any(key.startswith("ema/") for key in state)
    # The export is the EMA generator, which differs from the raw generator in the checkpoint.
    exported = load_file(result.export_path)
    raw = {key.removeprefix("generator/"): value for key, value in state.items() if key.startswith("generator/")}
    shared = [key for key in exported if key in raw and exported[key].is_floating_point()]
    assert shared and not all(torch.equal(exported[key], raw[key]) for key in shared)


def test_compile_keeps_auto_contiguous_and_explicit_channels_last_stays(tmp_path: Path) -> None:
    """torch 2.11's inductor failed on a channels-last DCGAN under --compile (found on an H200): auto avoids it."""
    from gankit.run import assemble, load_data, memory_format_for

    cfg = fake_config(tmp_path, generator="dcgan", image_size=32)
    assembly = assemble(cfg, load_data(cfg))
    assert memory_format_for(cfg, assembly) == torch.channels_last
    compiled = cfg.model_copy(update={"compile": True})
    assert memory_format_for(compiled, assembly) == torch.contiguous_format
    forced = cfg.model_copy(update={"compile": True, "channels_last": "on"})
    assert memory_format_for(forced, assembly) == torch.channels_last


def test_restored_optimizer_state_has_the_parameters_memory_format(tmp_path: Path) -> None:
    """Fused Adam on CUDA refuses state whose strides differ from its parameter's: a resume of a channels-last
    DCGAN failed at its first step (found on an H200). The restored state must look like a fresh run's."""
    from gankit.files import load_checkpoint, save_checkpoint
    from gankit.run import Trainer, assemble, load_data, resolve_precision

    cpu = torch.device("cpu")
    cfg = fake_config(tmp_path, generator="dcgan", image_size=32, channels_last="on")

    def trainer() -> Trainer:
        torch.manual_seed(0)
        return Trainer(cfg, assemble(cfg, load_data(cfg)), cpu, resolve_precision("off", cpu))

    first = trainer()
    order = first.batches.order(0)
    first.train_step([first.batches.batch(order, 0)])
    save_checkpoint(tmp_path / "checkpoint.safetensors", first.state())
    resumed = trainer()
    resumed.load_state(load_checkpoint(tmp_path / "checkpoint.safetensors"))
    checked = 0
    for optimizer in (resumed.optimizer_g, resumed.optimizer_d):
        for group in optimizer.param_groups:
            for parameter in group["params"]:
                for value in optimizer.state[parameter].values():
                    if value.shape == parameter.shape:
                        assert value.stride() == parameter.stride()
                        checked += 1
    assert checked > 0
    assert any(p.dim() == 4 and not p.is_contiguous() for p in resumed.generator.parameters())


def test_lr_schedule_is_a_pure_function_of_the_step() -> None:
    from gankit.run._trainer import lr_factor

    assert lr_factor(0, 100, "constant", 0) == 1.0
    assert [lr_factor(s, 4, "linear", 0) for s in range(4)] == [1.0, 0.75, 0.5, 0.25]
    assert lr_factor(0, 100, "cosine", 0) == 1.0 and lr_factor(50, 100, "cosine", 0) == pytest.approx(0.5)
    assert [lr_factor(s, 100, "constant", 4) for s in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]


def test_lr_schedule_sets_both_optimizers_each_step(tmp_path: Path) -> None:
    cfg = fake_config(tmp_path, lr_schedule="linear", max_steps=4, lr_g=1e-3, lr_d=2e-3, epochs=1)
    result = train(cfg)
    assert result.steps == 4
    from gankit.run._assembly import assemble, load_data
    from gankit.run._precision import resolve_precision
    from gankit.run._trainer import Trainer

    cpu = torch.device("cpu")
    trainer = Trainer(cfg, assemble(cfg, load_data(cfg)), cpu, resolve_precision("off", cpu))
    order = trainer.batches.order(0)
    rates = []
    for index in range(3):
        trainer.train_step([trainer.batches.batch(order, index)])
        trainer.after_step()
        rates.append((trainer.optimizer_g.param_groups[0]["lr"], trainer.optimizer_d.param_groups[0]["lr"]))
    assert rates == [pytest.approx((1e-3 * f, 2e-3 * f)) for f in (1.0, 0.75, 0.5)]
