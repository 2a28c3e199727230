"""``gankit compare``: the statistics against closed forms, bad input refused before anything starts, a compare run
end to end on fake data, killed half-way and continued, and run in parallel processes."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import assert_user_error, run

from gankit.cli.compare import arms_from_file, parse_arm, train_values
from gankit.compare import (
    Budget,
    Cost,
    Measured,
    compare_arm,
    parse_seeds,
    plan_compare,
    run_compare,
    summarize,
    t_quantile,
    tables,
    verdict,
    welch_interval,
)
from gankit.compare._statistics import incomplete_beta, t_cdf
from gankit.errors import ConfigError

# -- the statistics --------------------------------------------------------------------------------------------------


def test_summary_is_mean_and_sample_sd() -> None:
    summary = summarize([1.0, 2.0, 3.0])
    assert (summary.mean, summary.sd, summary.n) == (2.0, 1.0, 3)
    one = summarize([4.0])
    assert one.mean == 4.0 and math.isnan(one.sd) and one.n == 1


def test_incomplete_beta_closed_forms() -> None:
    for x in (0.0, 0.1, 0.5, 0.93, 1.0):
        assert incomplete_beta(1.0, 1.0, x) == pytest.approx(x, abs=1e-14)
        assert incomplete_beta(3.0, 1.0, x) == pytest.approx(x**3, abs=1e-13)  # I_x(a, 1) = x^a
        assert incomplete_beta(1.0, 2.0, x) == pytest.approx(1 - (1 - x) ** 2, abs=1e-13)


@pytest.mark.parametrize("p", [0.6, 0.9, 0.975, 0.995])
def test_t_quantile_closed_forms(p: float) -> None:
    assert t_quantile(p, 1) == pytest.approx(math.tan(math.pi * (p - 0.5)), rel=1e-9)  # Cauchy
    assert t_quantile(p, 2) == pytest.approx((2 * p - 1) / math.sqrt(2 * p * (1 - p)), rel=1e-9)
    assert t_quantile(1 - p, 2) == pytest.approx(-t_quantile(p, 2), rel=1e-12)


def test_t_quantile_tables() -> None:
    assert t_quantile(0.975, 10) == pytest.approx(2.228138851986274, rel=1e-9)
    assert t_quantile(0.975, 1e7) == pytest.approx(1.959963984540054, rel=1e-6)  # the normal's
    assert t_cdf(0.0, 3.3) == 0.5


def test_welch_interval_matches_r() -> None:
    """R: t.test(c(1, 2, 3), c(4, 5, 7)) gives t = -3.162, df = 3.4483, 95% CI -6.4542 to -0.2124."""
    difference, low, high, df = welch_interval([1.0, 2.0, 3.0], [4.0, 5.0, 7.0])
    assert difference == pytest.approx(-10 / 3)
    assert df == pytest.approx(3.448276, rel=1e-6)
    assert (low, high) == (pytest.approx(-6.454217, rel=1e-6), pytest.approx(-0.2124494, rel=1e-6))


def test_welch_with_equal_spread_is_students() -> None:
    """Two seeds each with variance 2: df = 2, half-width t(0.975, 2) * sqrt(2)."""
    difference, low, high, df = welch_interval([0.0, 2.0], [10.0, 12.0])
    half = 4.302652729911275 * math.sqrt(2.0)
    assert (difference, df) == (-10.0, pytest.approx(2.0))
    assert (low, high) == (pytest.approx(-10 - half), pytest.approx(-10 + half))
    assert compare_arm([0.0, 2.0], [10.0, 12.0], direction="lower").verdict == "better"
    assert compare_arm([0.0, 2.0], [10.0, 12.0], direction="higher").verdict == "worse"
    assert compare_arm([0.0, 20.0], [10.0, 12.0], direction="lower").verdict == "not established with 2 seeds"


def test_one_seed_establishes_nothing() -> None:
    difference, low, high, _ = welch_interval([1.0], [5.0])
    assert difference == -4.0 and math.isnan(low) and math.isnan(high)
    assert verdict(low, high, direction="lower", seeds=1) == "not established with 1 seed"


# -- bad input: one line, exit 2, nothing started ----------------------------------------------------------------

FAKE = ["--dataset", "fake", "--data-opt", "size=64", "--gen", "mlp"]
TWO_ARMS = ["--arm", "a: --loss nonsat", "--arm", "b: --loss minimax"]


def test_a_folder_compare_names_classes_not_digits() -> None:
    """Another dataset's classifier gives ``class_score``: the report shows it, and coverage counts classes."""
    summary = {"mean": 5.0, "sd": 0.5}
    difference = {"difference": 0.1, "low": -1.0, "high": 1.2, "verdict": "not established with 2 seeds"}
    timing = {"steps": 10, "time_per_epoch_s": 1.0, "time_per_epoch_ratio": 1.0}
    results: dict[str, Any] = {
        "baseline": "a",
        "summary": {arm: {"class_score": summary, "modes_covered": summary, **timing} for arm in ("a", "b")},
        "differences": {"b": {"class_score": difference, "modes_covered": difference}},
    }
    folder = tables({**results, "metrics": ["class_score", "modes_covered"]})
    assert "class score ↑" in folder and "classes covered ↑" in folder and "digits" not in folder
    mnist = {**results, "metrics": ["mnist_score", "modes_covered"]}
    mnist["summary"] = {arm: {**row, "mnist_score": summary} for arm, row in results["summary"].items()}
    mnist["differences"] = {"b": {"mnist_score": difference, "modes_covered": difference}}
    assert "MNIST score ↑" in tables(mnist) and "digits ↑" in tables(mnist)


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--arm", "nonsat", "--arm", "b: --loss minimax", "--steps", "5"], ["--arm 'nonsat' does not parse"]),
        (["--arm", "a: --los nonsat", "--arm", "b:", "--steps", "5"], ["cannot read arm 'a'", "--los"]),
        (["--arm", "a: --loss 'nonsat", "--arm", "b:", "--steps", "5"], ["does not parse", "quotation"]),
        (["--arm", "a: --batch-size x", "--arm", "b:", "--steps", "5"], ["arm 'a'", "--batch-size"]),
        (["--arm", "a: --loss nonsat", "--arm", "a: --loss minimax", "--steps", "5"], ["two arms are named 'a'"]),
        (["--arm", "a:", "--steps", "5"], ["at least two arms"]),
        (["--arm", "a b: --ema", "--arm", "c:", "--steps", "5"], ["arm name 'a b'"]),
        ([*TWO_ARMS, "--steps", "0"], ["budget must be positive", "0 steps"]),
        ([*TWO_ARMS, "--cpu-minutes", "0"], ["budget must be positive"]),
        ([*TWO_ARMS, "--epochs", "-1"], ["budget must be positive"]),
        ([*TWO_ARMS], ["give one budget"]),
        ([*TWO_ARMS, "--steps", "5", "--epochs", "1"], ["give one budget", "not 2"]),
        ([*TWO_ARMS, "--steps", "5", "--evals", "0"], ["--evals"]),
        ([*TWO_ARMS, "--steps", "5", "--seeds", "0,x"], ["--seeds"]),
        ([*TWO_ARMS, "--steps", "5", "--seeds", "1,1"], ["more than once"]),
        (["--arm", "a:", "--arm", "b: --data-opt size=32", "--steps", "5"], ["'a' and 'b' train on different data"]),
        (["--arm", "a:", "--arm", "b: --dataset mnist", "--steps", "5"], ["different data", "mnist"]),
        (["--arm", "a:", "--arm", "b: --seed 3", "--steps", "5"], ["--seed in arm 'b'", "--seeds"]),
        (["--arm", "a:", "--arm", "b: --out x", "--steps", "5"], ["--out in arm 'b'"]),
        (["--arm", "a:", "--arm", "b: --resume x", "--steps", "5"], ["--resume in arm 'b' is not a setting"]),
        (["--arm", "a:", "--arm", "b: --max-steps 9", "--steps", "5"], ["--max-steps in arm 'b'", "budget"]),
        (["--arm", "a:", "--arm", "b: --eval-every 9", "--steps", "5"], ["--eval-every", "--evals"]),
        (["--arm", "a:", "--arm", "b:", "--steps", "5", "--seed", "2"], ["--seed in the shared train options"]),
        (["--arm", "a:", "--arm", "b: --lr-g 7", "--steps", "5"], ["arm 'b'", "lr_g"]),
        (["--arm", "a:", "--arm", "b: --device cuda", "--cpu-minutes", "1"], ["arm 'b' trains on --device cuda"]),
    ],
)
def test_bad_input_is_one_line_and_starts_nothing(
    args: list[str], fragments: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert_user_error(run("compare", *args, *FAKE), *fragments)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_an_arm_whose_plugin_fails_starts_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = run("compare", "--arm", "a:", "--arm", "b: --loss nosuch", "--steps", "5", *FAKE, "--quiet")
    assert_user_error(result, "nosuch")
    assert list(tmp_path.iterdir()) == []


def test_a_folder_of_another_compare_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    args = ["compare", *TWO_ARMS, "--steps", "5", *FAKE, "--out", out, "--quiet"]
    assert_user_error(run(*args), "is not empty and holds no compare")
    assert [path.name for path in out.iterdir()] == ["mine.txt"]


# -- arms: the same options as gankit train, from flags or a TOML file ----------------------------------------------


def test_arm_options_mean_what_they_mean_to_train() -> None:
    shared = train_values(["--gen", "mlp", "--gen-opt", "hidden=8", "--ema"], where="shared")
    arm = parse_arm("wide: --gen-opt hidden=32 --disc-opt hidden=16 --betas 0.0 0.9 --latent-size 7", shared)
    assert arm.name == "wide"
    assert arm.values["generator"] == "mlp" and arm.values["ema"] is True
    assert arm.values["generator_options"] == {"hidden": 32}  # the arm's own option wins
    assert arm.values["discriminator_options"] == {"hidden": 16}
    assert arm.values["betas"] == (0.0, 0.9) and arm.values["latent_dim"] == 7  # old spelling folded, as train does
    assert parse_arm("base:", shared).values == {key: value for key, value in shared.items() if value is not None}


def test_arms_file_is_one_table_per_arm(tmp_path: Path) -> None:
    path = tmp_path / "arms.toml"
    path.write_text(
        'generator = "mlp"\nbatch_size = 32\n\n[nonsat]\nloss = "nonsat"\n\n'
        '[hinge]\nloss = "minimax"\nbatch_size = 16\n[hinge.generator_options]\nhidden = 8\n'
    )
    shared = train_values(["--batch-size", "8", "--dataset", "fake"], where="shared")
    arms = arms_from_file(path, shared)
    assert [arm.name for arm in arms] == ["nonsat", "hinge"]
    assert arms[0].values["batch_size"] == 8  # the command line's shared options over the file's
    assert arms[1].values["batch_size"] == 16 and arms[1].values["generator_options"] == {"hidden": 8}
    assert arms[1].values["dataset"] == "fake" and arms[1].values["generator"] == "mlp"
    (tmp_path / "none.toml").write_text('loss = "nonsat"\n')
    with pytest.raises(ConfigError, match="holds no arm"):
        arms_from_file(tmp_path / "none.toml", {})
    with pytest.raises(ConfigError, match="--arms"):
        arms_from_file(tmp_path / "missing.toml", {})


def test_compute_budget_buys_steps_at_the_measured_cost(tmp_path: Path) -> None:
    shared = train_values([*FAKE, "--batch-size", "16"], where="shared")
    arms = [parse_arm("a:", shared), parse_arm("b: --batch-size 8", shared)]
    plan = plan_compare(arms, seeds=parse_seeds("0-2"), budget=Budget("cpu_minutes", 0.5), evals=2, out=tmp_path)
    assert plan.seeds == (0, 1, 2) and plan.steps_per_epoch("a") == 4 and plan.steps_per_epoch("b") == 8
    jobs = plan.jobs({"a": 0.1, "b": 0.25})
    assert [(job.arm, job.seed, job.total_steps) for job in jobs][:2] == [("a", 0, 300), ("b", 0, 120)]
    config = jobs[1].config
    assert (config.max_steps, config.epochs, config.eval_every, config.seed, config.device) == (120, 15, 4, 0, "cpu")
    assert config.out == tmp_path / "runs" / "b-seed0"


def test_costs_keep_the_proportions_measured_side_by_side() -> None:
    """The first arm's median, times each arm's median ratio to it: a load that drifted between rounds moves each
    arm's own median, not the ratio of blocks run back to back."""
    costs = {"a": Cost(2.0, 1.0, [1.0, 2.0, 4.0]), "b": Cost(5.0, 1.1, [1.1, 5.0, 4.4])}
    assert Measured(costs, threads=2, device="cpu").seconds_per_step() == {"a": 2.0, "b": pytest.approx(2.2)}


def test_a_setting_added_later_at_its_default_is_the_same_compare() -> None:
    from gankit.compare._runner import _first_difference

    now = {"a": {"loss": "nonsat", "d_steps": 1}, "b": {"loss": "minimax", "d_steps": 1}}
    was = {"a": {"loss": "nonsat"}, "b": {"loss": "minimax"}}  # recorded before d_steps existed
    assert _first_difference(was, now) is None
    assert _first_difference(was, {**now, "b": {"loss": "minimax", "d_steps": 2}}) == "arm 'b': d_steps was null, now 2"
    assert _first_difference({"a": {}, "c": {}}, now) == "arms a, c there, a, b here"


# -- end to end --------------------------------------------------------------------------------------------------

SMALL = [
    "--dataset", "fake", "--data-opt", "size=1600", "--batch-size", "16", "--gen", "mlp", "--gen-opt", "hidden=16",
    "--disc-opt", "hidden=16", "--eval-samples", "100", "--evals", "1", "--cost-rounds", "1",
    "--checkpoint-every", "25", "--log-every", "25",
]  # fmt: skip
"""The issue's command made small: 100 steps an epoch, scored at steps 100 and 200 with 100 samples."""
ISSUE = [*TWO_ARMS, "--seeds", "0,1", "--steps", "200"]


def final_scores(out: Path) -> dict[tuple[str, int], list[dict[str, Any]]]:
    """Each run's evaluation points, scores only (the minutes depend on the measured costs)."""
    results = json.loads((out / "results.json").read_text())
    return {
        (r["arm"], r["seed"]): [{k: v for k, v in p.items() if k != "minutes"} for p in r["points"]]
        for r in results["runs"]
    }


def finished_runs(out: Path) -> list[str]:
    """The runs whose training returned, as the compare records them (a half-written record reads as none)."""
    try:
        return list(json.loads((out / "finished.json").read_text()))
    except (OSError, ValueError):
        return []


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("compare") / "cmp"
    result = run("compare", *ISSUE, *SMALL, "--out", out)
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.slow
def test_compare_end_to_end(finished: Path) -> None:
    results = json.loads((finished / "results.json").read_text())
    assert results["baseline"] == "a" and results["budget"] == "200 steps" and results["seeds"] == [0, 1]
    assert [(r["arm"], r["seed"]) for r in results["runs"]] == [("a", 0), ("b", 0), ("a", 1), ("b", 1)]
    for run_result in results["runs"]:
        assert [point["step"] for point in run_result["points"]] == [100, 200]
        config = json.loads(
            (finished / "runs" / f"{run_result['arm']}-seed{run_result['seed']}" / "config.json").read_text()
        )
        assert config["seed"] == run_result["seed"] and config["max_steps"] == 200 and config["eval_every"] == 100
    for arm in ("a", "b"):
        summary = results["summary"][arm]
        assert summary["steps"] == 200 and summary["frechet_distance"]["n"] == 2
        fds = [r["points"][-1]["frechet_distance"] for r in results["runs"] if r["arm"] == arm]
        assert summary["frechet_distance"]["mean"] == pytest.approx(sum(fds) / 2)
    assert results["summary"]["a"]["time_per_epoch_ratio"] == 1.0
    difference = results["differences"]["b"]["frechet_distance"]
    assert difference["low"] <= difference["difference"] <= difference["high"]
    assert difference["verdict"] in ("better", "worse", "not established with 2 seeds")
    text = (finished / "results.md").read_text()
    assert "| a | 200 |" in text and "| b | FD ↓ |" in text and "(scores.png)" in text
    for picture in ("scores.png", "samples/a.png", "samples/b.png"):
        assert (finished / picture).stat().st_size > 1000


@pytest.mark.slow
def test_a_finished_compare_is_not_run_again(finished: Path) -> None:
    metrics = sorted(finished.glob("runs/*/metrics.jsonl"))
    before = [path.stat().st_mtime_ns for path in metrics]
    result = run("compare", *ISSUE, *SMALL, "--out", finished)
    assert result.exit_code == 0, result.output
    assert result.output.count("finished before; kept") == 4
    assert [path.stat().st_mtime_ns for path in metrics] == before


@pytest.mark.slow
def test_costs_measured_again_keep_the_runs(finished: Path, tmp_path: Path) -> None:
    """--remeasure-costs on a compare at equal steps: new costs and times, the same runs and scores."""
    again = Path(shutil.copytree(finished, tmp_path / "cmp"))
    record = json.loads((again / "compare.json").read_text())
    record["costs"]["arms"]["b"]["rounds"] = [123.0]  # a measurement taken on a machine far busier than this one
    (again / "compare.json").write_text(json.dumps(record))
    metrics = {path: path.read_bytes() for path in again.glob("runs/*/metrics.jsonl")}
    result = run("compare", *ISSUE, *SMALL, "--out", again, "--remeasure-costs")
    assert result.exit_code == 0, result.output
    assert result.output.count("finished before; kept") == 4
    remeasured = json.loads((again / "compare.json").read_text())
    assert remeasured["costs"]["arms"]["b"]["rounds"] != [123.0]
    assert {key: remeasured[key] for key in ("arms", "first_seeds", "first_budget")} == {
        key: record[key] for key in ("arms", "first_seeds", "first_budget")
    }
    assert all(path.read_bytes() == before for path, before in metrics.items())
    assert final_scores(again) == final_scores(finished)


def test_costs_that_set_the_steps_are_not_measured_again(tmp_path: Path) -> None:
    shared = train_values([*FAKE, "--batch-size", "16"], where="shared")
    arms = [parse_arm("a:", shared), parse_arm("b: --batch-size 8", shared)]
    plan = plan_compare(arms, seeds=parse_seeds("0"), budget=Budget("cpu_minutes", 0.5), evals=2, out=tmp_path)
    costs = {"threads": 2, "device": "cpu", "arms": {name: Cost(0.1, 1.0, [0.1]).as_json() for name in ("a", "b")}}
    record = {"arms": plan.recorded(), "costs": costs, "first_seeds": [0], "first_budget": "0.5 CPU minutes"}
    (tmp_path / "compare.json").write_text(json.dumps(record))
    with pytest.raises(ConfigError, match=r"compares at equal compute.*cannot be measured again"):
        run_compare(plan, remeasure=True)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["compare.json"]


@pytest.mark.slow
def test_another_compare_in_the_same_folder_is_refused(finished: Path) -> None:
    other = ["--arm", "a: --loss nonsat", "--arm", "b: --loss nonsat", "--seeds", "0,1", "--steps", "200"]
    assert_user_error(run("compare", *other, *SMALL, "--out", finished), "other arms", "arm 'b'", "minimax")


@pytest.mark.slow
def test_killed_half_way_it_continues_and_matches(finished: Path, tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    command = [sys.executable, "-m", "gankit", "compare", *ISSUE, *SMALL, "--out", str(out)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = out / "runs" / "a-seed0"
    deadline = time.monotonic() + 240
    second = out / "runs" / "b-seed0" / "checkpoint.safetensors"  # checkpoints every 25 steps
    while not (finished_runs(out) and second.exists()) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)  # the first run finished, the second half-way
    process.wait()
    assert finished_runs(out) == ["a-seed0"], "the compare was not killed half-way"
    kept = {path: path.stat().st_mtime_ns for path in first.rglob("*") if path.is_file()}

    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "a seed 0: finished before; kept" in result.stdout
    assert "b seed 0: training 200 steps into" in result.stdout and "resumed at step" in result.stdout
    assert {path: path.stat().st_mtime_ns for path in kept} == kept  # the finished run was not touched
    assert final_scores(out) == final_scores(finished)  # resumed runs end where uninterrupted ones did


@pytest.mark.slow
def test_sigterm_stops_with_a_checkpoint_and_one_line(tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    command = [sys.executable, "-m", "gankit", "compare", *TWO_ARMS, "--seeds", "0", "--steps", "200", *SMALL]
    process = subprocess.Popen([*command, "--out", str(out)], stderr=subprocess.PIPE, text=True)
    checkpoint = out / "runs" / "a-seed0" / "checkpoint.safetensors"
    deadline = time.monotonic() + 240
    while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=240)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    (line,) = [line for line in stderr.splitlines() if line.startswith("Error:")]
    assert "compare interrupted" in line and "Run the same command again" in line
    assert checkpoint.exists() and finished_runs(out) == []


@pytest.mark.slow
def test_parallel_runs_match_sequential_ones(finished: Path, tmp_path: Path) -> None:
    """Seed 0's two runs, each in a process of its own, end where the same runs trained here did."""
    out = tmp_path / "cmp"
    args = [*TWO_ARMS, "--seeds", "0", "--steps", "200", *SMALL, "--out", str(out), "--parallel", "2"]
    result = run("compare", *args)
    assert result.exit_code == 0, result.output
    sequential = final_scores(finished)
    assert final_scores(out) == {key: sequential[key] for key in (("a", 0), ("b", 0))}
