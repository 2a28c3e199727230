"""The standalone generator file: round trips, metadata, and every way a file can be wrong."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
import torch
from PIL import Image
from pydantic import Field
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

import gankit
from gankit.errors import ExportError, FileFormatError
from gankit.export import METADATA_KEYS, ExportMetadata, load_generator, read_export_metadata, save_generator
from gankit.interfaces import Generator, GeneratorOptions
from gankit.pictures import sample_images, save_image_grid
from gankit.registry import RUNTIME_DISTRIBUTION, registry

PLUGIN = "tiny-export-test"


class TinyGenerator(Generator):
    """MLP with an embedding and a BatchNorm, so the export carries buffers (running stats, an int64 counter)."""

    class Options(GeneratorOptions):
        hidden: int = Field(16, ge=1, le=1024, description="Hidden width.")

    options: Options
    latent_distribution: ClassVar[str] = "standard_normal"

    def __init__(self, options: Options) -> None:
        super().__init__(options)
        c, h, w = self.image_shape
        self.embed = nn.Embedding(self.num_classes, self.latent_dim) if self.num_classes else None
        self.net = nn.Sequential(
            nn.Linear(self.latent_dim, options.hidden),
            nn.BatchNorm1d(options.hidden),
            nn.ReLU(),
            nn.Linear(options.hidden, c * h * w),
            nn.Tanh(),
        )

    def forward(self, latent: Tensor, labels: Tensor | None = None) -> Tensor:
        if self.embed is not None and labels is not None:
            latent = latent * self.embed(labels)
        return self.net(latent).view(-1, *self.image_shape)


@pytest.fixture
def plugin() -> Iterator[str]:
    registry.register("generator", PLUGIN, TinyGenerator)
    try:
        yield PLUGIN
    finally:
        registry.unregister("generator", PLUGIN)


def make(plugin: str, **options: object) -> Generator:
    values = {"latent_dim": 8, "image_size": 6, "channels": 1, "hidden": 12, **options}
    generator = registry.create("generator", plugin, values)
    torch.manual_seed(0)
    for module in generator.modules():  # non-default weights and running stats, so a lost tensor shows
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight)
    generator.train()
    with torch.no_grad():
        for _ in range(3):
            labels = torch.arange(5) % max(generator.num_classes, 1) if generator.num_classes else None
            generator(torch.randn(5, generator.latent_dim), labels)
    return generator.eval()


@pytest.fixture
def exported(plugin: str, tmp_path: Path) -> tuple[Generator, Path]:
    generator = make(plugin)
    path = tmp_path / "gen.safetensors"
    save_generator(generator, path, plugin_name=plugin, extra={"run": "abc"})
    return generator, path


def rewrite(path: Path, *, tensors: dict[str, Tensor] | None = None, **changes: str | None) -> None:
    """Re-save an export with some tensors or metadata changed (None deletes a key), as another tool would: without
    the content hash unless ``changes`` gives one."""
    with safe_open(str(path), framework="pt") as handle:
        metadata = {key: value for key, value in handle.metadata().items() if key != "content_hash"}
    for key, value in changes.items():
        if value is None:
            metadata.pop(key, None)
        else:
            metadata[key] = value
    save_file(tensors if tensors is not None else load_file(path), path, metadata=metadata)


# -- round trip --------------------------------------------------------------------------------------------------


def test_round_trip_gives_bitwise_identical_samples(exported: tuple[Generator, Path]) -> None:
    original, path = exported
    loaded = load_generator(path)
    assert type(loaded) is TinyGenerator
    assert not loaded.training
    assert loaded.options == original.options
    for key, tensor in original.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], tensor), key
        assert loaded.state_dict()[key].dtype == tensor.dtype
    assert torch.equal(sample_images(original, 20, seed=3), sample_images(loaded, 20, seed=3))


def test_conditional_round_trip(plugin: str, tmp_path: Path) -> None:
    original = make(plugin, num_classes=3)
    path = tmp_path / "cond.safetensors"
    save_generator(original, path, plugin_name=plugin)
    loaded = load_generator(str(path))
    assert loaded.num_classes == 3
    assert torch.equal(sample_images(original, 7, seed=1), sample_images(loaded, 7, seed=1))


def test_load_generator_is_exposed_lazily_on_the_package(exported: tuple[Generator, Path]) -> None:
    assert gankit.load_generator is load_generator
    with pytest.raises(AttributeError):
        _ = gankit.no_such_thing  # type: ignore[attr-defined]


def test_metadata_fields_are_present_and_parsed(exported: tuple[Generator, Path]) -> None:
    generator, path = exported
    with safe_open(str(path), framework="pt") as handle:
        raw = handle.metadata()
    assert set(METADATA_KEYS) <= set(raw)
    assert all(isinstance(value, str) for value in raw.values())
    assert raw["format"] == "gankit.generator"
    assert raw["format_version"] == "1"
    assert raw["output_range"] == "[-1, 1]"

    meta = read_export_metadata(path)
    assert isinstance(meta, ExportMetadata)
    assert meta.format_version == 1
    assert meta.gankit_version == gankit.__version__
    assert meta.plugin == PLUGIN
    assert meta.distribution == RUNTIME_DISTRIBUTION
    assert meta.plugin_options == generator.options.model_dump(mode="json")
    assert meta.latent_dim == 8
    assert meta.latent_distribution == "standard_normal"
    assert meta.image_shape == (1, 6, 6)
    assert meta.num_classes == 0
    assert meta.output_range == (-1.0, 1.0)
    assert meta.plugin_api_version == TinyGenerator.api_version
    assert meta.extra == {"run": "abc"}


def test_unresolvable_plugin_name_records_unknown_distribution(plugin: str, tmp_path: Path) -> None:
    path = tmp_path / "g.safetensors"
    save_generator(make(plugin), path, plugin_name="not-registered-anywhere")
    meta = read_export_metadata(path)
    assert (meta.distribution, meta.distribution_version) == ("unknown", "unknown")


def test_extra_metadata_may_not_replace_standard_keys(plugin: str, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="plugin"):
        save_generator(make(plugin), tmp_path / "g.safetensors", plugin_name=plugin, extra={"plugin": "evil"})
    assert list(tmp_path.iterdir()) == []


def test_overwrite_is_refused_unless_asked(exported: tuple[Generator, Path], plugin: str) -> None:
    generator, path = exported
    before = path.read_bytes()
    with pytest.raises(ExportError, match="already exists"):
        save_generator(generator, path, plugin_name=plugin)
    assert path.read_bytes() == before
    other = make(plugin, hidden=5)
    save_generator(other, path, plugin_name=plugin, overwrite=True)
    assert read_export_metadata(path).plugin_options["hidden"] == 5
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary files left behind


def test_failed_write_leaves_nothing_behind(plugin: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(tensors: object, filename: str, metadata: object = None) -> None:
        Path(filename).write_bytes(b"half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("gankit.export._format.save_file", broken)
    path = tmp_path / "g.safetensors"
    with pytest.raises(ExportError, match="No space left"):
        save_generator(make(plugin), path, plugin_name=plugin)
    assert list(tmp_path.iterdir()) == []


def test_missing_folder_is_a_one_line_error(plugin: str, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="does not exist"):
        save_generator(make(plugin), tmp_path / "nope" / "g.safetensors", plugin_name=plugin)


def test_load_on_a_device_string_and_buffers_survive(exported: tuple[Generator, Path]) -> None:
    original, path = exported
    loaded = load_generator(path, device=torch.device("cpu"))
    bn = loaded.net[1]
    assert isinstance(bn, nn.BatchNorm1d)
    assert int(bn.num_batches_tracked) == 3
    assert torch.equal(bn.running_mean, original.net[1].running_mean)


# -- errors ------------------------------------------------------------------------------------------------------


def one_line_error(path: Path, loader: object = load_generator) -> str:
    with pytest.raises(ExportError) as info:
        loader(path)  # type: ignore[operator]
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("loader", [load_generator, read_export_metadata])
def test_missing_file(tmp_path: Path, loader: object) -> None:
    assert "no such file" in one_line_error(tmp_path / "absent.safetensors", loader)


@pytest.mark.parametrize("loader", [load_generator, read_export_metadata])
def test_random_bytes(tmp_path: Path, loader: object) -> None:
    path = tmp_path / "noise.safetensors"
    path.write_bytes(os.urandom(4096))
    assert "not a safetensors file" in one_line_error(path, loader)


def test_tiny_file(tmp_path: Path) -> None:
    path = tmp_path / "tiny.safetensors"
    path.write_bytes(b"abc")
    assert "not a safetensors file" in one_line_error(path)


def test_json_header_that_is_not_json(tmp_path: Path) -> None:
    path = tmp_path / "bad.safetensors"
    body = b"{not json"
    path.write_bytes(len(body).to_bytes(8, "little") + body)
    assert "not JSON" in one_line_error(path)


@pytest.mark.parametrize("cut", [1, 100, 10_000])
def test_truncated_file(exported: tuple[Generator, Path], cut: int) -> None:
    _, path = exported
    data = path.read_bytes()
    path.write_bytes(data[: max(len(data) - cut, 9)])
    message = one_line_error(path)
    assert "truncated" in message or "not a safetensors file" in message


def test_truncated_inside_the_data(exported: tuple[Generator, Path]) -> None:
    _, path = exported
    path.write_bytes(path.read_bytes()[:-7])
    assert "truncated" in one_line_error(path)


def test_absurd_declared_sizes_are_rejected_before_reading(tmp_path: Path) -> None:
    header = {"w": {"dtype": "F32", "shape": [100_000, 100_000], "data_offsets": [0, 16]}}
    body = json.dumps(header).encode()
    path = tmp_path / "absurd.safetensors"
    path.write_bytes(len(body).to_bytes(8, "little") + body + bytes(16))
    assert "corrupt" in one_line_error(path)


def test_plain_safetensors_without_metadata(tmp_path: Path) -> None:
    path = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(3)}, path)
    assert "is a safetensors file but not a gankit export" in one_line_error(path)
    assert "not a gankit export" in one_line_error(path, read_export_metadata)


def test_newer_format_version(exported: tuple[Generator, Path]) -> None:
    _, path = exported
    rewrite(path, format_version="999")
    message = one_line_error(path, read_export_metadata)
    assert message.endswith("was written by a newer gankit (format 999); upgrade gankit")
    assert "newer gankit" in one_line_error(path)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("plugin_options", "{oops"),
        ("plugin_options", "[1, 2]"),
        ("image_shape", "[1, 6]"),
        ("image_shape", "not json"),
        ("latent_dim", "eight"),
        ("output_range", "[-1]"),
        ("plugin", None),
        ("format_version", "one"),
    ],
)
def test_malformed_metadata_fields(exported: tuple[Generator, Path], key: str, value: str | None) -> None:
    _, path = exported
    rewrite(path, **{key: value})
    message = one_line_error(path, read_export_metadata)
    assert key in message
    assert "damaged" in message


def test_huge_metadata_strings_are_refused(exported: tuple[Generator, Path]) -> None:
    _, path = exported
    rewrite(path, note="x" * 1_100_000)
    assert "characters long" in one_line_error(path, read_export_metadata)


def test_checkpoint_passed_as_an_export(tmp_path: Path) -> None:
    from gankit.files import save_checkpoint

    path = tmp_path / "ckpt.safetensors"
    save_checkpoint(path, {"w": torch.zeros(2)})
    assert "training checkpoint, not a gankit export" in one_line_error(path)


def test_tensor_of_the_wrong_shape(exported: tuple[Generator, Path]) -> None:
    _, path = exported
    tensors = load_file(path)
    tensors["net.0.weight"] = torch.zeros(3, 3)
    rewrite(path, tensors=tensors)
    message = one_line_error(path)
    assert "net.0.weight" in message
    assert "[3, 3]" in message
    assert "[12, 8]" in message


def test_tensor_of_the_wrong_dtype(exported: tuple[Generator, Path]) -> None:
    _, path = exported
    tensors = load_file(path)
    tensors["net.0.weight"] = tensors["net.0.weight"].double()
    rewrite(path, tensors=tensors)
    message = one_line_error(path)
    assert "F64" in message
    assert "F32" in message


def test_missing_and_unexpected_tensors(exported: tuple[Generator, Path]) -> None:
    _, path = exported
    tensors = load_file(path)
    del tensors["net.3.bias"]
    rewrite(path, tensors=tensors)
    assert "'net.3.bias' is missing" in one_line_error(path)
    tensors = load_file(path) | {"net.3.bias": torch.zeros(36), "stowaway": torch.zeros(1)}
    rewrite(path, tensors=tensors)
    assert "stowaway" in one_line_error(path)


def test_plugin_not_installed_names_the_distribution(exported: tuple[Generator, Path]) -> None:
    _, path = exported
    rewrite(path, plugin="fancy-gan", distribution="gankit-fancy", distribution_version="2.1.0")
    message = one_line_error(path)
    assert "'fancy-gan'" in message
    assert "not installed" in message
    assert "install 'gankit-fancy'" in message
    assert "2.1.0" in message


def test_runtime_plugin_not_registered_says_so(exported: tuple[Generator, Path]) -> None:
    _, path = exported
    registry.unregister("generator", PLUGIN)
    assert "registered at runtime" in one_line_error(path)


def test_recorded_options_the_plugin_rejects(exported: tuple[Generator, Path]) -> None:
    _, path = exported
    rewrite(path, plugin_options=json.dumps({"hidden": -4}))
    assert "hidden" in one_line_error(path)


def test_geometry_disagreeing_with_the_options(exported: tuple[Generator, Path]) -> None:
    _, path = exported
    rewrite(path, latent_dim="9")
    assert "latent_dim" in one_line_error(path)


# -- sampling ----------------------------------------------------------------------------------------------------


class ElementwiseGenerator(Generator):
    """No matrix products, so its outputs cannot depend on how a BLAS blocks a batch: any difference is ours."""

    def forward(self, latent: Tensor, labels: Tensor | None = None) -> Tensor:
        return torch.tanh(latent).view(-1, *self.image_shape)


def test_sample_images_draws_the_same_latents_whatever_the_batch_size() -> None:
    generator = ElementwiseGenerator(GeneratorOptions(latent_dim=36, image_size=6, channels=1))
    reference = sample_images(generator, 23, seed=7, batch_size=1000)
    assert reference.shape == (23, 1, 6, 6)
    assert reference.dtype == torch.float32
    assert reference.device.type == "cpu"
    expected = torch.tanh(generator.sample_latent(23, generator=torch.Generator().manual_seed(7)))
    assert torch.equal(reference.view(23, -1), expected)
    for batch_size in (1, 2, 5, 22, 23):
        assert torch.equal(sample_images(generator, 23, seed=7, batch_size=batch_size), reference), batch_size
    assert not torch.equal(sample_images(generator, 23, seed=8), reference)


def test_sample_images_with_matmuls_agree_across_batch_sizes(plugin: str) -> None:
    # A BLAS may round a row differently depending on the batch it sits in, so only closeness is promised here.
    generator = make(plugin)
    reference = sample_images(generator, 23, seed=7)
    assert float(reference.min()) >= -1.0
    assert float(reference.max()) <= 1.0
    for batch_size in (1, 2, 5, 23):
        torch.testing.assert_close(sample_images(generator, 23, seed=7, batch_size=batch_size), reference)


def test_sample_images_restores_training_mode_and_ignores_global_rng(plugin: str) -> None:
    generator = make(plugin).train()
    torch.manual_seed(123)
    first = sample_images(generator, 4, seed=0)
    torch.manual_seed(456)
    assert torch.equal(sample_images(generator, 4, seed=0), first)
    assert generator.training


def test_sample_images_labels(plugin: str) -> None:
    generator = make(plugin, num_classes=3)
    default = sample_images(generator, 6, seed=0)
    explicit = sample_images(generator, 6, seed=0, labels=torch.tensor([0, 1, 2, 0, 1, 2]))
    assert torch.equal(default, explicit)
    assert not torch.equal(default, sample_images(generator, 6, seed=0, labels=torch.zeros(6, dtype=torch.long)))
    with pytest.raises(ValueError, match="shape"):
        sample_images(generator, 6, seed=0, labels=torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="lie in"):
        sample_images(generator, 2, seed=0, labels=torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="unconditional"):
        sample_images(make(plugin), 2, seed=0, labels=torch.zeros(2, dtype=torch.long))


def test_sample_zero_images(plugin: str) -> None:
    assert sample_images(make(plugin), 0, seed=0).shape == (0, 1, 6, 6)


def test_save_image_grid(plugin: str, tmp_path: Path) -> None:
    images = sample_images(make(plugin), 10, seed=0)
    path = tmp_path / "grid.png"
    save_image_grid(images, path)
    with Image.open(path) as picture:
        # 10 images -> 4 columns, 3 rows of 6 px with 2 px padding around each.
        assert picture.size == (4 * 8 + 2, 3 * 8 + 2)
    save_image_grid(images, path, nrow=10)
    with Image.open(path) as picture:
        assert picture.size == (10 * 8 + 2, 8 + 2)
    assert [p.name for p in tmp_path.iterdir()] == ["grid.png"]


def test_save_image_grid_maps_minus_one_to_black_and_one_to_white(tmp_path: Path) -> None:
    images = torch.stack([torch.full((1, 4, 4), -1.0), torch.full((1, 4, 4), 1.0)])
    path = tmp_path / "bw.png"
    save_image_grid(images, path, nrow=2)
    with Image.open(path) as picture:
        gray = picture.convert("L")
        assert gray.getpixel((3, 3)) == 0
        assert gray.getpixel((2 + 6 + 3, 3)) == 255


def test_save_image_grid_unknown_extension(plugin: str, tmp_path: Path) -> None:
    with pytest.raises(FileFormatError):
        save_image_grid(sample_images(make(plugin), 2, seed=0), tmp_path / "grid.notanimage")
    assert list(tmp_path.iterdir()) == []
