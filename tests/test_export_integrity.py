"""Exports that contradict themselves are refused in one line, and ``gankit info`` gives the verdict ``gankit sample``
would (issue 22): a content hash over tensors and metadata, the card checked against itself and the metadata, an
ONNX model's metadata against its graph, and a generator whose images are NaN from finite weights."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from cli_helpers import assert_user_error, run
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from gankit.errors import ExportError
from gankit.export import CARD_KEY, load_generator, read_export_metadata, save_generator
from gankit.interfaces import Generator
from gankit.registry import registry

needs_onnx = pytest.mark.skipif(
    __import__("importlib").util.find_spec("onnxscript") is None, reason='needs pip install "gankit[onnx]"'
)


def mlp() -> Generator:
    torch.manual_seed(0)
    generator = registry.create("generator", "mlp", {"hidden": 8, "image_size": 28, "latent_dim": 6})
    return generator.eval()


def metadata_of(path: Path) -> dict[str, str]:
    with safe_open(str(path), framework="pt") as handle:
        return dict(handle.metadata())


def rewrite(path: Path, metadata: dict[str, str], tensors: dict[str, torch.Tensor] | None = None) -> None:
    save_file(tensors if tensors is not None else load_file(path), str(path), metadata=metadata)


@pytest.fixture
def export(tmp_path: Path) -> Path:
    path = tmp_path / "g.safetensors"
    save_generator(mlp(), path, plugin_name="mlp", card={"dataset": "mnist", "class_count": 10, "steps": 3})
    return path


def relabelled(metadata: dict[str, str]) -> dict[str, str]:
    """The MLP's 784 outputs read as 4 x 14 x 14: every metadata key and the card agree, so only the hash tells."""
    options = json.loads(metadata["plugin_options"])
    card = json.loads(metadata[CARD_KEY])
    card.update(image_shape=[4, 14, 14], channel_order="CHW, 4 channels")
    return {
        **metadata,
        "plugin_options": json.dumps({**options, "channels": 4, "image_size": 14}, sort_keys=True),
        "image_shape": "[4, 14, 14]",
        CARD_KEY: json.dumps(card),
    }


def test_an_export_edited_after_it_was_written_fails_its_content_hash(export: Path, tmp_path: Path) -> None:
    """An MLP relabelled 4x14x14 with the same 784 outputs sampled silently."""
    assert metadata_of(export)["content_hash"].startswith("blake2b:")
    rewrite(export, relabelled(metadata_of(export)))
    assert read_export_metadata(export).image_shape == (4, 14, 14)  # the metadata alone reads fine
    with pytest.raises(ExportError, match="does not match its hash"):
        load_generator(export)
    assert_user_error(run("sample", export, "--out", tmp_path / "s.png"), "does not match its hash")
    result = run("info", export)
    assert_user_error(result, "does not match its hash")
    assert "export metadata" in result.output  # the tables, then the verdict
    assert not (tmp_path / "s.png").exists()
    tensors = load_file(export)
    tensors["net.0.bias"][0] += 1.0  # one weight edited, the metadata as written
    rewrite(export, metadata_of(export), tensors)
    with pytest.raises(ExportError, match="does not match its hash"):
        load_generator(export)


def test_an_export_without_a_hash_still_loads(export: Path) -> None:
    """Exports written before the hash existed have none: they load, checked in every other way."""
    metadata = metadata_of(export)
    del metadata["content_hash"]
    rewrite(export, metadata)
    assert torch.equal(load_generator(export).state_dict()["net.0.weight"], mlp().state_dict()["net.0.weight"])
    result = run("info", export)
    assert result.exit_code == 0, result.output
    assert "verdict: gankit sample draws it" in result.output
    metadata["content_hash"] = "md5:abc"
    rewrite(export, metadata)
    with pytest.raises(ExportError, match="'content_hash' is not 'blake2b:'"):
        read_export_metadata(export)


CARDS: dict[str, tuple[dict[str, Any], str]] = {
    "card_version 'zz'": ({"card_version": "zz"}, "'card_version' is \"zz\", not an integer from 1"),
    "class_names 5": ({"class_names": 5}, "'class_names' is 5, not a list of strings"),
    "seed {'x': 1}": ({"seed": {"x": 1}}, "'seed' is {\"x\": 1}, not an integer"),
    "names for other classes": ({"class_names": ["a", "b"]}, "'class_names' has 2 names for 'class_count' 10"),
    "epochs against steps": ({"steps_per_epoch": 3, "epochs": 5}, "'epochs' is 5, but 'steps' 3"),
    "scores from later": ({"last_scores": {"step": 9, "kid": 0.1}}, "'last_scores' are of step 9"),
    "another shape": ({"image_shape": [3, 28, 28]}, "model card says image_shape [3, 28, 28] but its metadata"),
}


@pytest.mark.parametrize("case", list(CARDS))
def test_a_card_of_wrong_types_or_contradicting_the_metadata_is_refused(export: Path, case: str) -> None:
    change, said = CARDS[case]
    metadata = metadata_of(export)
    del metadata["content_hash"]  # as an older export, or one another tool wrote: only the card is wrong
    metadata[CARD_KEY] = json.dumps({**json.loads(metadata[CARD_KEY]), **change})
    rewrite(export, metadata)
    with pytest.raises(ExportError, match="is a damaged gankit export"):
        read_export_metadata(export)
    assert_user_error(run("info", export), said)


def test_a_conditional_export_whose_card_counts_other_classes(tmp_path: Path) -> None:
    generator = registry.create("generator", "mlp", {"hidden": 8, "num_classes": 3, "latent_dim": 6})
    path = tmp_path / "c.safetensors"
    save_generator(generator, path, plugin_name="mlp", card={"class_count": 5})
    assert_user_error(run("info", path), "class_count 5 but its metadata says num_classes 3")


@pytest.mark.parametrize("case", ["card_version 'zz'", "class_names 5", "seed {'x': 1}"])
def test_an_edited_run_card_is_refused_not_copied_into_the_export(tmp_path: Path, case: str) -> None:
    out = tmp_path / "run"
    common = ["--gen", "mlp", "--gen-opt", "hidden=8", "--disc-opt", "hidden=8", "--dataset", "fake"]
    args = [*common, "--data-opt", "size=32", "--batch-size", "8", "--max-steps", "2", "--device", "cpu"]
    assert run("train", *args, "--quiet", "--out", out).exit_code == 0
    card_path = out / "model_card.json"
    card_path.write_text(json.dumps({**json.loads(card_path.read_text()), **CARDS[case][0]}))
    assert_user_error(run("export", out, "--out", tmp_path / "g.safetensors"), str(card_path), CARDS[case][1])
    assert not (tmp_path / "g.safetensors").exists()


def nan_images_dcgan(path: Path) -> Path:
    """A DCGAN whose BatchNorm has a negative running variance: every weight finite, every image NaN."""
    generator = registry.create("generator", "dcgan", {"width": 8, "image_size": 28, "latent_dim": 8}).eval()
    batchnorm = next(m for m in generator.modules() if isinstance(m, torch.nn.BatchNorm2d))
    with torch.no_grad():
        batchnorm.running_var.fill_(-1.0)
    save_generator(generator, path, plugin_name="dcgan")
    return path


@needs_onnx
def test_a_generator_drawing_nan_from_finite_weights_is_refused_everywhere(tmp_path: Path) -> None:
    """Refused by sample, but exported to ONNX: now refused by both, and info says so."""
    export = nan_images_dcgan(tmp_path / "nan.safetensors")
    assert_user_error(run("sample", export, "--out", tmp_path / "s.png"), "generator 'dcgan'")
    result = run("export", export, "--format", "onnx", "--out", tmp_path / "nan.onnx")
    assert_user_error(result, "cannot be sampled, so nothing was exported", "generator 'dcgan'")
    assert not (tmp_path / "nan.onnx").exists()
    info = run("info", export)
    assert_user_error(info, "generator 'dcgan'")
    assert "model card" in info.output


@needs_onnx
def test_onnx_metadata_contradicting_its_graph_is_refused(tmp_path: Path) -> None:
    import onnx

    export = tmp_path / "g.safetensors"
    save_generator(mlp(), export, plugin_name="mlp")
    model_path = tmp_path / "g.onnx"
    assert run("export", export, "--format", "onnx", "--out", model_path).exit_code == 0
    result = run("info", model_path)
    assert result.exit_code == 0 and "verdict: its graph's inputs and output agree" in result.output
    for change, said in (
        (
            {"latent_dim": "7", "plugin_options.latent_dim": 7},
            "'latent' has shape [N, 6], but its metadata says [N, 7]",
        ),
        (
            {"image_shape": "[1, 14, 14]", "plugin_options.image_size": 14, "card.image_shape": [1, 14, 14]},
            "'images' has shape [N, 1, 28, 28], but its metadata says [N, 1, 14, 14]",
        ),
        ({"num_classes": "4", "plugin_options.num_classes": 4}, "takes the inputs ['latent'], but its metadata"),
    ):
        model = onnx.load(str(model_path))
        props = {prop.key: prop.value for prop in model.metadata_props}
        options, card = json.loads(props["plugin_options"]), json.loads(props[CARD_KEY])
        for key, value in change.items():
            if key.startswith("plugin_options."):
                options[key.removeprefix("plugin_options.")] = value
            elif key.startswith("card."):
                card[key.removeprefix("card.")] = value
            else:
                props[key] = str(value)
        props["plugin_options"], props[CARD_KEY] = json.dumps(options, sort_keys=True), json.dumps(card)
        del model.metadata_props[:]
        model.metadata_props.extend(onnx.StringStringEntryProto(key=k, value=v) for k, v in props.items())
        edited = tmp_path / "edited.onnx"
        onnx.save(model, str(edited))
        assert_user_error(run("info", edited), "is a damaged gankit export", said)


def test_an_export_from_a_run_gets_a_hash_and_info_gives_the_verdict(tmp_path: Path, export: Path) -> None:
    copy = tmp_path / "copy.safetensors"
    shutil.copy(export, copy)
    result = run("info", copy)
    assert result.exit_code == 0, result.output
    assert "verdict: gankit sample draws it (weights, content hash and one test batch checked)" in result.output
