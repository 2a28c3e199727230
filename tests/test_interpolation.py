"""Latent walks: slerp's closed-form properties, the walk's shape and keypoints, the pictures, and the command."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import assert_user_error, run
from PIL import Image

from gankit.export import load_generator, save_generator
from gankit.interfaces import Generator
from gankit.pictures import latent_walk, sample_images, save_walk, slerp, walk_images
from gankit.registry import registry

# -- slerp -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_endpoints_are_exact(dtype: torch.dtype) -> None:
    a, b = torch.randn(2, 7, 100, generator=torch.Generator().manual_seed(0), dtype=dtype)
    assert torch.equal(slerp(a, b, 0.0), a)
    assert torch.equal(slerp(a, b, 1.0), b)
    path = slerp(a, b, torch.tensor([[0.0], [1.0]], dtype=dtype))
    assert path.shape == (2, 7, 100)
    assert torch.equal(path[0], a) and torch.equal(path[1], b)


def test_unit_vectors_stay_unit_and_equal_norms_are_kept() -> None:
    a, b = torch.nn.functional.normalize(torch.randn(2, 5, 64, dtype=torch.float64), dim=-1)
    t = torch.linspace(0, 1, 11, dtype=torch.float64)[:, None]
    norms = slerp(a, b, t).norm(dim=-1)
    torch.testing.assert_close(norms, torch.ones_like(norms), rtol=0, atol=1e-12)
    norms = slerp(3 * a, 3 * b, t).norm(dim=-1)
    torch.testing.assert_close(norms, torch.full_like(norms, 3.0), rtol=0, atol=1e-12)
    lerp_norms = (a + t[..., None] * (b - a)).norm(dim=-1)  # the straight line cuts inside the sphere
    assert (lerp_norms[1:-1] < 1 - 1e-3).all()


def test_closed_forms() -> None:
    x, y = torch.eye(2, dtype=torch.float64)
    torch.testing.assert_close(slerp(x, y, 0.5), torch.tensor([1.0, 1.0], dtype=torch.float64) / math.sqrt(2))
    torch.testing.assert_close(slerp(x, y, 1 / 3), torch.tensor([math.cos(math.pi / 6), 0.5], dtype=torch.float64))
    # The angle grows linearly with t: constant speed along the arc.
    t = torch.linspace(0, 1, 7, dtype=torch.float64)
    path = slerp(x, y, t)
    assert path.shape == (7, 2)
    angles = torch.atan2(path[:, 1], path[:, 0])
    torch.testing.assert_close(angles, t * math.pi / 2)


def test_parallel_and_opposite_vectors_give_no_nan() -> None:
    a = torch.randn(16)
    same = slerp(a, 2 * a, torch.linspace(0, 1, 5))
    torch.testing.assert_close(same, torch.linspace(1, 2, 5)[:, None] * a)
    assert torch.isfinite(slerp(a, -a, torch.linspace(0, 1, 5))).all()
    assert torch.isfinite(slerp(torch.zeros(4), torch.ones(4), 0.5)).all()


# -- the walk --------------------------------------------------------------------------------------------------------


def test_walk_is_a_loop_through_the_keypoints() -> None:
    keypoints = torch.randn(3, 10)
    walk = latent_walk(keypoints, 4)
    assert walk.shape == (3, 4, 10)
    assert torch.equal(walk[:, 0], keypoints)
    torch.testing.assert_close(walk[2, 1], slerp(keypoints[2], keypoints[0], 0.25))  # the last leg closes the loop
    assert torch.equal(latent_walk(keypoints, 1)[:, 0], keypoints)
    with pytest.raises(ValueError, match="K >= 2"):
        latent_walk(keypoints[:1], 4)
    with pytest.raises(ValueError, match="steps"):
        latent_walk(keypoints, 0)


def generator(plugin: str = "mlp", **options: object) -> Generator:
    return registry.create("generator", plugin, {"hidden": 4, "latent_dim": 8, **options}).eval()


def test_walk_images_pass_through_the_images_gankit_sample_draws() -> None:
    model = generator()
    images = walk_images(model, 3, seed=5, steps=4)
    assert images.shape == (3, 4, 1, 1, 28, 28) and images.dtype == torch.float32
    torch.testing.assert_close(images[:, 0, 0], sample_images(model, 3, seed=5), rtol=0, atol=1e-6)
    assert images.abs().max() <= 1


def test_conditional_walks_go_across_the_labels() -> None:
    model = registry.create("generator", "dcgan", {"width": 2, "num_classes": 3, "latent_dim": 8}).eval()
    images = walk_images(model, 2, seed=1, steps=3)
    assert images.shape == (2, 3, 3, 1, 28, 28)
    keypoints = model.sample_latent(2, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(keypoints[1:2].repeat(3, 1), torch.arange(3)).clamp(-1, 1)
    torch.testing.assert_close(images[1, 0], expected, rtol=0, atol=1e-6)
    one_label = walk_images(model, 2, seed=1, steps=3, label=2)
    assert one_label.shape == (2, 3, 1, 1, 28, 28)
    torch.testing.assert_close(one_label[:, :, 0], images[:, :, 2], rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="label 3"):
        walk_images(model, 2, seed=1, label=3)
    with pytest.raises(ValueError, match="label 0"):
        walk_images(generator(), 2, seed=1, label=0)


def test_grid_and_gif(tmp_path: Path) -> None:
    images = walk_images(generator(image_size=8), 3, seed=0, steps=4)
    save_walk(images, tmp_path / "walk.png", tmp_path / "walk.gif")
    assert Image.open(tmp_path / "walk.png").size == (4 * 10 + 2, 3 * 10 + 2)  # a leg per row, 2 px padding
    gif = Image.open(tmp_path / "walk.gif")
    assert gif.n_frames == 12 and gif.size == (8, 8) and gif.info["loop"] == 0
    conditional = torch.rand(2, 3, 5, 1, 8, 8) * 2 - 1
    save_walk(conditional, tmp_path / "c.png", tmp_path / "c.gif")
    assert Image.open(tmp_path / "c.png").size == (5 * 10 + 2, 6 * 10 + 2)  # a frame per row, a label per column
    assert Image.open(tmp_path / "c.gif").size == (5 * 10 + 2, 12)
    with pytest.raises(ValueError, match="walk"):
        save_walk(conditional[0], tmp_path / "x.png", tmp_path / "x.gif")


# -- the command line ------------------------------------------------------------------------------------------------


@pytest.fixture
def export(tmp_path: Path) -> Path:
    path = tmp_path / "mlp.safetensors"
    save_generator(generator(image_size=8), path, plugin_name="mlp")
    return path


def test_sample_interpolate_writes_grid_and_gif(export: Path, tmp_path: Path) -> None:
    result = run("sample", export, "--interpolate", "3", "--steps", "4", "--seed", "2", "--out", tmp_path / "w.png")
    assert result.exit_code == 0, result.output
    assert "w.png" in result.output and "w.gif" in result.output
    assert Image.open(tmp_path / "w.gif").n_frames == 12
    save_walk(walk_images(load_generator(export), 3, seed=2, steps=4), tmp_path / "x.png", tmp_path / "x.gif")
    assert np.array_equal(np.asarray(Image.open(tmp_path / "x.png")), np.asarray(Image.open(tmp_path / "w.png")))


def test_sample_interpolate_conditional(tmp_path: Path) -> None:
    model = registry.create("generator", "dcgan", {"width": 2, "num_classes": 3, "latent_dim": 8})
    save_generator(model, tmp_path / "c.safetensors", plugin_name="dcgan")
    result = run(
        "sample", tmp_path / "c.safetensors", "--interpolate", "2", "--steps", "2", "--out", tmp_path / "c.png"
    )
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "c.png").size == (3 * 30 + 2, 4 * 30 + 2)
    result = run(
        "sample", tmp_path / "c.safetensors", "--interpolate", "2", "--label", "1", "--out", tmp_path / "1.png"
    )
    assert result.exit_code == 0, result.output


def test_sample_interpolate_bad_input(export: Path, tmp_path: Path) -> None:
    out = tmp_path / "w.png"
    assert_user_error(run("sample", export, "--interpolate", "1", "--out", out), "--interpolate")
    assert_user_error(run("sample", export, "--steps", "4", "--out", out), "--steps needs --interpolate")
    assert_user_error(run("sample", export, "--interpolate", "2", "--n", "9", "--out", out), "--n")
    assert_user_error(run("sample", export, "--interpolate", "2", "--out", tmp_path / "w.gif"), ".gif")
    assert_user_error(run("sample", export, "--interpolate", "2", "--label", "0", "--out", out), "conditional")
    (tmp_path / "w.gif").write_bytes(b"keep")
    assert_user_error(run("sample", export, "--interpolate", "2", "--out", out), "w.gif already exists")
    assert (tmp_path / "w.gif").read_bytes() == b"keep" and not out.exists()
    assert run("sample", export, "--interpolate", "2", "--out", out, "--overwrite").exit_code == 0


@pytest.mark.parametrize("channels", [2, 4])
def test_every_channel_count_training_accepts_gets_its_pictures(tmp_path: Path, channels: int) -> None:
    """2-channel images crashed `gankit train` at its end (no GIF, no loss plot) and `sample --interpolate`
    (issue 22): Pillow builds no palette from a luminance-and-alpha grid."""
    out = tmp_path / "run"
    args = ["--gen", "mlp", "--gen-opt", "hidden=8", "--disc-opt", "hidden=8", "--dataset", "fake", "--data-opt"]
    args += ["size=32", "--data-opt", f"channels={channels}", "--batch-size", "8", "--max-steps", "3"]
    result = run("train", *args, "--device", "cpu", "--quiet", "--out", out)
    assert result.exit_code == 0, result.output
    assert (out / "samples.gif").is_file() and (out / "loss.png").is_file()
    walk = run("sample", out, "--interpolate", "3", "--steps", "2", "--out", tmp_path / "walk.png")
    assert walk.exit_code == 0, walk.output
    with Image.open(tmp_path / "walk.gif") as gif:
        assert gif.n_frames == 6
