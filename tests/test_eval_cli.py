"""``gankit eval`` and ``evaluate_generator`` on a generator trained for two steps, with small sample counts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import assert_user_error, run

from gankit.evaluation import METRICS, evaluate_generator, evaluate_images, reference_from_images, reference_metrics
from gankit.registry import create_plugin
from gankit.run import build_config, train

pytestmark = pytest.mark.slow  # the first evaluation of a process classifies the 10,000 MNIST test images

MNIST_KEYS = set(METRICS) - {"class_score"}  # the shipped digit classifier's class score is the MNIST score
UNCONDITIONAL_KEYS = MNIST_KEYS - {"class_accuracy"}


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run on the `fake` dataset: scoring it against MNIST takes --force."""
    out = tmp_path_factory.mktemp("eval") / "run"
    config = build_config(
        {
            "generator": "mlp",
            "dataset": "fake",
            "dataset_options": {"size": 64},
            "batch_size": 16,
            "max_steps": 2,
            "device": "cpu",
            "out": out,
        }
    )
    train(config)
    return out


def test_help() -> None:
    result = run("eval", "--help")
    assert result.exit_code == 0
    for flag in ("--n", "--seed", "--batch-size", "--device", "--out", "--overwrite", "--reference", "--force"):
        assert flag in result.output


def test_eval_of_a_run_folder_writes_eval_json_and_is_reproducible(trained_run: Path, tmp_path: Path) -> None:
    result = run("eval", "--force", trained_run, "--n", "200", "--seed", "3", "--reference-dataset", "mnist")
    assert result.exit_code == 0, result.output
    assert "frechet_distance" in result.output and "eval.json" in result.output
    report = json.loads((trained_run / "eval.json").read_text())
    assert set(report["metrics"]) == UNCONDITIONAL_KEYS
    assert report["n"] == 200 and report["seed"] == 3 and "reference" not in report
    assert 1.0 <= report["metrics"]["mnist_score"] <= 10.0
    assert 0 <= report["metrics"]["modes_covered"] <= 10

    again = run("eval", "--force", trained_run, "--n", "200", "--seed", "3", "--reference-dataset", "mnist",
                "--out", tmp_path / "again.json")  # fmt: skip
    assert again.exit_code == 0, again.output
    assert json.loads((tmp_path / "again.json").read_text())["metrics"] == report["metrics"]

    other = run("eval", "--force", trained_run, "--n", "200", "--seed", "4", "--reference-dataset", "mnist",
                "--out", tmp_path / "other.json")  # fmt: skip
    assert other.exit_code == 0, other.output
    assert json.loads((tmp_path / "other.json").read_text())["metrics"] != report["metrics"]


def test_eval_refuses_to_overwrite_unless_asked(trained_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "scores.json"
    out.write_text("{}")
    assert_user_error(run("eval", "--force", trained_run, "--n", "20", "--out", out), "already exists", "--overwrite")
    assert out.read_text() == "{}"
    result = run("eval", "--force", trained_run, "--n", "20", "--out", out, "--overwrite")
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["n"] == 20


def test_eval_of_an_export_writes_beside_it_and_adds_the_reference_row(trained_run: Path) -> None:
    export = trained_run / "generator.safetensors"
    result = run("eval", "--force", export, "--n", "100", "--reference", "--reference-dataset", "mnist")
    assert result.exit_code == 0, result.output
    report = json.loads((trained_run / "generator.eval.json").read_text())
    assert set(report["metrics"]) == UNCONDITIONAL_KEYS
    assert set(report["reference"]) == MNIST_KEYS
    assert "real data" in result.output
    # real digits beat an untrained generator on every metric that has a direction
    assert report["reference"]["frechet_distance"] < report["metrics"]["frechet_distance"]
    assert report["reference"]["mnist_score"] > report["metrics"]["mnist_score"]


def test_bad_paths_are_one_line_errors(tmp_path: Path) -> None:
    assert_user_error(run("eval", tmp_path / "nothing.safetensors", "--n", "20"), "nothing.safetensors")
    assert_user_error(run("eval", tmp_path, "--n", "20"), "not a gankit run folder")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file at all")
    assert_user_error(run("eval", junk, "--n", "20"), "junk.safetensors")


def test_evaluate_generator_is_deterministic_and_scores_conditional_generators() -> None:
    generator = create_plugin("generator", "mlp", {"num_classes": 10})
    first = evaluate_generator(generator, n=50, seed=1, batch_size=16)
    assert set(first) == MNIST_KEYS
    assert 0.0 <= first["class_accuracy"] <= 1.0
    assert evaluate_generator(generator, n=50, seed=1, batch_size=16) == first
    # another batch size only changes how a BLAS rounds the products, in the last bits
    rebatched = evaluate_generator(generator, n=50, seed=1, batch_size=50)
    assert rebatched == pytest.approx(first, rel=1e-5)
    with pytest.raises(ValueError, match="at least"):
        evaluate_generator(generator, n=3)


def test_real_training_images_score_as_the_floor() -> None:
    floor = reference_metrics(n=300, seed=0)
    assert floor["modes_covered"] == 10
    assert floor["class_accuracy"] > 0.97
    assert floor["precision"] > 0.6 and floor["recall"] > 0.6
    assert floor["mnist_score"] > 8.5
    assert floor == reference_metrics(n=300, seed=0)


def test_images_scored_against_themselves_are_perfect() -> None:
    test = create_plugin("dataset", "mnist").load("test")
    images, labels = test.images[:200], test.labels[:200]
    scores = evaluate_images(images, labels=labels, reference=reference_from_images(images, labels))
    assert scores["frechet_distance"] == pytest.approx(0.0, abs=1e-6)
    assert scores["precision"] == 1.0 and scores["recall"] == 1.0
    assert scores["class_accuracy"] > 0.95


def test_diverged_generators_are_a_one_line_error() -> None:
    import torch

    from gankit.errors import GankitError

    with pytest.raises(GankitError, match="diverged"):
        evaluate_images(torch.full((8, 1, 28, 28), float("nan")))


def test_a_generator_that_does_not_fit_the_reference_is_refused_in_one_line(trained_run: Path, tmp_path: Path) -> None:
    from gankit.export import save_generator

    colour = tmp_path / "colour.safetensors"
    generator = create_plugin("generator", "mlp", {"channels": 3, "image_size": 32, "hidden": 8})
    save_generator(generator, colour, plugin_name="mlp")
    assert_user_error(run("eval", colour, "--n", "20"), "(3, 32, 32)", "'mnist'", "(1, 28, 28)", "--force")
    assert not (tmp_path / "colour.eval.json").exists()
    assert_user_error(
        run("eval", trained_run, "--n", "20", "--reference-dataset", "mnist", "--out", tmp_path / "a.json"),
        "trained on dataset 'fake'",
        "--force",
    )
    assert_user_error(run("eval", colour, "--n", "20", "--reference-dataset", "nope"), "unknown dataset 'nope'")


def test_the_reference_dataset_is_a_parameter(trained_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "fake.json"
    result = run("eval", trained_run, "--n", "20", "--reference-dataset", "fake", "--reference", "--out", out)
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["reference_dataset"] == "fake" and set(report["reference"]) == set(METRICS) - {"mnist_score"}


def test_an_unknown_reference_dataset_is_named_first(trained_run: Path, tmp_path: Path) -> None:
    result = run("eval", trained_run, "--n", "20", "--reference-dataset", "mnsit", "--out", tmp_path / "x.json")
    assert_user_error(result, "unknown dataset 'mnsit'", "Did you mean 'mnist'")
    assert not (tmp_path / "x.json").exists()


def test_an_export_is_checked_against_the_dataset_its_model_card_records(trained_run: Path, tmp_path: Path) -> None:
    """The export carries the run's dataset in its card, so it is refused against MNIST just like the run folder."""
    export = trained_run / "generator.safetensors"
    result = run("eval", export, "--n", "20", "--reference-dataset", "mnist", "--out", tmp_path / "e.json")
    assert_user_error(result, "'fake'", "--force")
