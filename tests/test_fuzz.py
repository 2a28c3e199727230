"""Fuzzing the file readers: whatever a file holds, they load it or raise gankit's own error, in bounded memory.

Exports, checkpoints and IDX files come from other people, so ``read_export_metadata``, ``load_generator``,
``load_checkpoint`` and ``read_idx`` are fed random bytes, random JSON headers, hostile headers (absurd shapes and
offsets, odd dtypes, huge or deeply nested metadata, options that describe enormous models) and real files with
bytes flipped or cut. The property is the same everywhere: the call returns, or raises ``GankitError``; any other
exception is a bug, and so is a crash. Memory is bounded by capping the address space while these tests run (on
Linux), so an attempt to allocate what a hostile header declares fails the test instead of swapping the machine.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import random
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from gankit.errors import CheckpointError, ExportError, GankitError
from gankit.export import load_generator, read_export_metadata, save_generator
from gankit.files import load_checkpoint, read_idx, save_checkpoint
from gankit.registry import registry

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FEWER = settings(FUZZ, max_examples=60)  # for the slower examples (real model builds, megabyte-long metadata)

ADDRESS_SPACE_HEADROOM = 4 << 30
"""How much more address space than it maps at the start the process may use while fuzzing."""


@pytest.fixture(scope="module", autouse=True)
def bounded_memory() -> Iterator[None]:
    """Cap the address space (RLIMIT_AS) at what the process maps now plus 4 GiB; Linux only, else no cap."""
    try:
        import resource

        status = Path("/proc/self/status").read_text()
    except (ImportError, OSError):
        yield
        return
    mapped = next((int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmSize:")), None)
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if mapped is None:
        yield
        return
    cap = mapped + ADDRESS_SPACE_HEADROOM
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


# -- real files to start from ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="module")
def real_export(folder: Path) -> bytes:
    """A valid export of a tiny MLP generator: small enough that random flips often land in the header."""
    torch.manual_seed(0)
    generator = registry.create("generator", "mlp", {"hidden": 2, "latent_dim": 3, "image_size": 4})
    path = folder / "real-export.safetensors"
    save_generator(generator, path, plugin_name="mlp")
    load_generator(path)  # the starting point itself loads
    return path.read_bytes()


@pytest.fixture(scope="module")
def real_checkpoint(folder: Path) -> bytes:
    """A valid checkpoint with the awkward parts of a real one: Adam state, RNG states, numpy and tuples."""
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    # Adam's state dict, spelled out: building a torch.optim.Adam imports torch._dynamo, seconds on a small CPU.
    optimizer = {
        "state": {
            i: {"step": torch.tensor(1.0), "exp_avg": p.detach() * 0.1} for i, p in enumerate(model.parameters())
        },
        "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "params": [0, 1]}],
    }
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer,
        "torch_rng": torch.get_rng_state()[:64],
        "numpy_rng": np.random.default_rng(0).bit_generator.state,
        "python": (3, random.Random(0).random(), float("nan")),
        "step": np.int64(7),
        "weights": np.arange(4, dtype=np.float32),
    }
    path = folder / "real-checkpoint.safetensors"
    save_checkpoint(path, state)
    load_checkpoint(path)
    return path.read_bytes()


def split(data: bytes) -> tuple[dict[str, Any], bytes]:
    """A safetensors file's parsed JSON header and its data bytes."""
    (length,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + length]), data[8 + length :]


def assemble(header: Any, data: bytes = b"") -> bytes:
    """A safetensors file from any JSON-able header (or raw header text) and data bytes."""
    text = header if isinstance(header, str) else json.dumps(header)
    encoded = text.encode("utf-8", "surrogatepass")
    return struct.pack("<Q", len(encoded)) + encoded + data


def survives(call: Callable[[Path], object], path: Path) -> None:
    """The property: ``call(path)`` returns or raises GankitError; anything else propagates and fails the test."""
    with contextlib.suppress(GankitError):
        call(path)


SAFETENSORS_READERS: tuple[Callable[[Path], object], ...] = (read_export_metadata, load_generator, load_checkpoint)


def check_all_readers(folder: Path, content: bytes) -> None:
    path = folder / "fuzzed.safetensors"
    path.write_bytes(content)
    for reader in SAFETENSORS_READERS:
        survives(reader, path)


# -- strategies ------------------------------------------------------------------------------------------------------

HOSTILE_INTS = st.sampled_from(
    [-(2**63), -1, 0, 1, 3, 4, 2**31, 2**32 + 1, 2**40, 2**53 + 1, 2**63 - 1, 2**63, 2**64, 10**30]
) | st.integers(-3, 300)

SAFETENSORS_DTYPES = ["F32", "F16", "BF16", "F64", "I64", "I32", "U8", "I8", "BOOL", "U64", "F8_E5M2", "F8_E4M3"]
DTYPES = st.sampled_from(
    [*SAFETENSORS_DTYPES, "C64", "C128", "F4", "F6_E2M3", "E8M0", "XYZ", "", "f32", "F 32"]
) | st.text(max_size=6)

json_scalars = st.none() | st.booleans() | HOSTILE_INTS | st.floats() | st.text(max_size=12)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=16,
)


def nested(depth: int) -> str:
    """JSON text nested ``depth`` lists deep."""
    return "[" * depth + "]" * depth


DEPTHS = st.sampled_from([10, 400, 800, 900, 950, 990, 1000, 2000, 100_000])
deep_json = DEPTHS.map(nested)
huge_strings = st.sampled_from([1_000_001, 2_500_000]).map(lambda n: "9" * n)
json_texts = json_values.map(json.dumps)

tensor_specs = (
    st.fixed_dictionaries(
        {
            "dtype": DTYPES,
            "shape": st.lists(HOSTILE_INTS, max_size=4),
            "data_offsets": st.lists(HOSTILE_INTS, max_size=3),
        }
    )
    | json_values
)
tensor_names = st.sampled_from(["net.0.weight", "net.0.bias", "model/weight", "a", ""]) | st.text(max_size=8)

OPTION_KEYS = ["hidden", "image_size", "channels", "latent_dim", "num_classes", "embedding_dim", "width"]
HOSTILE_KEYS = ["__class__", "__init__", "__proto__", "", "..", "../../etc", "os.path:join", "hidden "]
plugin_options_texts = st.one_of(
    json_texts,
    st.lists(json_values, max_size=3).map(json.dumps),
    st.dictionaries(
        st.sampled_from(OPTION_KEYS + HOSTILE_KEYS) | st.text(max_size=6),
        HOSTILE_INTS | st.sampled_from([1024, 4096, 100_000, 28, 64]) | json_values,
        max_size=6,
    ).map(json.dumps),
    DEPTHS.map(lambda depth: '{"hidden": ' + nested(depth) + "}"),
    DEPTHS.map(lambda depth: '{"__class__": ' + nested(depth) + "}"),
    deep_json,
    huge_strings,
)
metadata_values: dict[str, st.SearchStrategy[str]] = {
    "format": st.sampled_from(["gankit.generator", "gankit.checkpoint", "gankit.other", ""]) | st.text(max_size=8),
    "format_version": st.sampled_from(
        ["1", "999", "1e9", "-1", "nan", "inf", "", "0", " 1 ", "1.0", "0x1", "١", "1_0", "9" * 5000]
    )
    | st.text(max_size=6),
    "plugin": st.sampled_from(["mlp", "dcgan", "no-such-plugin", "", "os.path:join", "../x", "builtins:eval"]),
    "distribution": st.sampled_from(["gankit", "unknown", "<registered at runtime>", "", "evil-package"]),
    "plugin_options": plugin_options_texts,
    "latent_dim": st.sampled_from(["3", "0", "-1", "1e9", "9" * 5000, "", "3.0"]) | HOSTILE_INTS.map(str),
    "image_shape": st.one_of(
        st.lists(HOSTILE_INTS, max_size=4).map(json.dumps),
        st.just("[1, 4, 4]"),
        st.just(json.dumps([2**40, 2**40, 2**40])),
        deep_json,
        st.text(max_size=8),
    ),
    "num_classes": st.sampled_from(["0", "-1", "10", "1e3", "100001"]) | HOSTILE_INTS.map(str),
    "output_range": st.one_of(
        st.sampled_from(
            ["[-1, 1]", "[1e999, 1]", "[NaN, 1]", "[1" + "0" * 400 + ", 1]", "[true, 1]", "[]", '"x"']
        ).filter(bool),
        json_texts,
        deep_json,
    ),
    "plugin_api_version": st.sampled_from(["1", "0", "-1", "999", "x"]),
    "state": json_texts | deep_json,
    "extra": huge_strings | st.text(max_size=20),
}


# -- the tests -------------------------------------------------------------------------------------------------------


@FUZZ
@given(content=st.binary(max_size=600))
def test_random_bytes(folder: Path, content: bytes) -> None:
    check_all_readers(folder, content)
    path = folder / "fuzzed-idx"
    path.write_bytes(content)
    for ndim in (None, 1, 3):
        survives(lambda p, ndim=ndim: read_idx(p, ndim=ndim), path)


@FUZZ
@given(
    header=json_values | deep_json | st.text(max_size=40),
    data=st.binary(max_size=64),
    declared=st.none() | HOSTILE_INTS.filter(lambda n: 0 <= n < 2**64),
)
def test_valid_length_prefix_with_random_json(folder: Path, header: Any, data: bytes, declared: int | None) -> None:
    content = assemble(header, data)
    if declared is not None:  # a length prefix that lies about the header
        content = struct.pack("<Q", declared) + content[8:]
    check_all_readers(folder, content)


@FUZZ
@given(
    tensors=st.dictionaries(tensor_names, tensor_specs, max_size=4),
    metadata=st.none()
    | st.sampled_from(["export", "checkpoint"])
    | st.dictionaries(st.text(max_size=6), json_values, max_size=3),
    data=st.binary(max_size=256),
)
def test_hostile_tensor_entries(
    folder: Path, real_export: bytes, real_checkpoint: bytes, tensors: dict[str, Any], metadata: Any, data: bytes
) -> None:
    """Absurd shapes and offsets, odd dtypes and sizes that disagree with the data, under real or random metadata."""
    header: dict[str, Any] = dict(tensors)
    if isinstance(metadata, str):
        real = real_export if metadata == "export" else real_checkpoint
        header["__metadata__"] = split(real)[0]["__metadata__"]
    elif metadata is not None:
        header["__metadata__"] = metadata
    check_all_readers(folder, assemble(header, data))


@FUZZ
@given(
    count=st.integers(1, 4),
    dtype=st.sampled_from(["F32", "F16", "BF16", "U8", "I64", "BOOL", "F8_E5M2", "C64", "XYZ"]),
    starts=st.lists(st.integers(0, 16), min_size=4, max_size=4),
    kind=st.sampled_from(["export", "checkpoint"]),
)
def test_overlapping_offsets_that_pass_the_size_checks(
    folder: Path, real_export: bytes, real_checkpoint: bytes, count: int, dtype: str, starts: list[int], kind: str
) -> None:
    """Entries whose sizes are right but which overlap, leave gaps or repeat: safetensors' own parser refuses them."""
    itemsize = {"F32": 4, "F16": 2, "BF16": 2, "U8": 1, "I64": 8, "BOOL": 1, "F8_E5M2": 1, "C64": 8, "XYZ": 4}[dtype]
    header: dict[str, Any] = {}
    end = 0
    for index in range(count):
        begin = starts[index] * itemsize
        header[f"t{index}"] = {"dtype": dtype, "shape": [2], "data_offsets": [begin, begin + 2 * itemsize]}
        end = max(end, begin + 2 * itemsize)
    header["__metadata__"] = split(real_export if kind == "export" else real_checkpoint)[0]["__metadata__"]
    check_all_readers(folder, assemble(header, bytes(end)))


@FUZZ
@given(
    changes=st.dictionaries(
        st.sampled_from(sorted(metadata_values)),
        st.none() | st.just("<hostile>"),
        min_size=1,
        max_size=4,
    ).flatmap(
        lambda keys: st.fixed_dictionaries(
            {key: (st.none() if value is None else metadata_values[key]) for key, value in keys.items()}
        )
    ),
)
def test_hostile_export_metadata(folder: Path, real_export: bytes, changes: dict[str, str | None]) -> None:
    """A real export's tensors under metadata with some keys deleted or replaced by hostile values."""
    header, data = split(real_export)
    metadata = dict(header["__metadata__"])
    for key, value in changes.items():
        if value is None:
            metadata.pop(key, None)
        else:
            metadata[key] = value
    header["__metadata__"] = metadata
    path = folder / "fuzzed-export.safetensors"
    path.write_bytes(assemble(header, data))
    survives(read_export_metadata, path)
    survives(load_generator, path)


model_options = st.fixed_dictionaries(
    {},
    optional={
        "hidden": st.sampled_from([1, 256, 4096]),
        "width": st.sampled_from([1, 64, 1024]),
        "image_size": st.sampled_from([4, 28, 64, 1024]),
        "channels": st.sampled_from([1, 4]),
        "latent_dim": st.sampled_from([1, 3, 100_000]),
        "num_classes": st.sampled_from([0, 10, 100_000]),
        "embedding_dim": st.sampled_from([0, 1024]),
    },
)


@FEWER
@given(
    plugin=st.sampled_from(["mlp", "dcgan"]),
    options=model_options,
    shape=st.sampled_from([None, "options"]),
)
def test_plugin_options_describing_models_of_any_size(
    folder: Path, real_export: bytes, plugin: str, options: dict[str, int], shape: str | None
) -> None:
    """Valid options for models of up to hundreds of GB, under the tensors of a tiny one: refused, never built."""
    header, data = split(real_export)
    metadata = {**header["__metadata__"], "plugin": plugin, "plugin_options": json.dumps(options)}
    if shape == "options":  # the geometry the options imply, so only the tensors can tell
        size, channels = options.get("image_size", 28), options.get("channels", 1)
        metadata.update(
            image_shape=json.dumps([channels, size, size]),
            latent_dim=str(options.get("latent_dim", 100)),
            num_classes=str(options.get("num_classes", 0)),
        )
    header["__metadata__"] = metadata
    path = folder / "fuzzed-options.safetensors"
    path.write_bytes(assemble(header, data))
    survives(load_generator, path)


MARKERS = ["__tensor__", "__ndarray__", "__numpy__", "__tuple__", "__dict__", "__float__"]
NUMPY_DTYPES = ["<i8", "<u4", "<f8", "|b1", "|i1", "<c16", "|V8", "|S3", "<U2", "|O", "<M8[ns]", "(2,)<f4", "nope"]
CHECKPOINT_TENSORS = {
    "f32": torch.zeros(2),
    "bf16": torch.zeros(2, dtype=torch.bfloat16),
    "f8": torch.zeros(2, dtype=torch.float8_e5m2),
    "u8": torch.zeros(3, dtype=torch.uint8),
    "bool": torch.zeros(1, dtype=torch.bool),
}
skeletons = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(st.text(max_size=5) | st.sampled_from(MARKERS), children, max_size=3),
        st.builds(lambda key: {"__tensor__": key}, st.sampled_from(sorted(CHECKPOINT_TENSORS)) | json_scalars),
        st.builds(lambda key: {"__ndarray__": key}, st.sampled_from(sorted(CHECKPOINT_TENSORS)) | json_scalars),
        st.builds(
            lambda dtype, value: {"__numpy__": [dtype, value]},
            st.sampled_from(NUMPY_DTYPES),
            st.sampled_from([0, -1, 1000, 2**40, 2**64, 1.5, "x", "nan", [1, 2]]) | children,
        ),
        st.builds(lambda items: {"__numpy__": items}, children),
        st.builds(lambda items: {"__tuple__": items}, children),
        st.builds(lambda pairs: {"__dict__": pairs}, st.lists(st.lists(children, max_size=3), max_size=3) | children),
        st.builds(lambda value: {"__float__": value}, st.sampled_from(["nan", "inf", "-inf", "big"]) | children),
    ),
    max_leaves=12,
)


@pytest.mark.filterwarnings("ignore::numpy.exceptions.ComplexWarning")  # a complex cast to a float: still a number
@FUZZ
@given(skeleton=skeletons | st.sampled_from(["<deep>"]))
def test_hostile_checkpoint_skeletons(folder: Path, skeleton: Any) -> None:
    """Checkpoint state skeletons that misuse every marker, over tensors of dtypes numpy lacks."""
    path = folder / "fuzzed-checkpoint.safetensors"
    state = nested(950) if skeleton == "<deep>" else json.dumps(skeleton)
    save_file(
        CHECKPOINT_TENSORS, str(path), metadata={"format": "gankit.checkpoint", "format_version": "1", "state": state}
    )
    survives(load_checkpoint, path)


@FEWER
@given(
    kind=st.sampled_from(["export", "checkpoint"]),
    flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), max_size=6),
    cut=st.none() | st.floats(0, 1),
    insert=st.binary(max_size=8),
)
def test_mutated_real_files(
    folder: Path,
    real_export: bytes,
    real_checkpoint: bytes,
    kind: str,
    flips: list[tuple[float, int]],
    cut: float | None,
    insert: bytes,
) -> None:
    """A real export or checkpoint with bytes overwritten, then maybe cut short or lengthened."""
    content = bytearray(real_export if kind == "export" else real_checkpoint)
    for where, value in flips:
        content[int(where * len(content))] = value
    if cut is not None:
        del content[int(cut * len(content)) :]
    content += insert
    check_all_readers(folder, bytes(content))


@FUZZ
@given(
    magic=st.sampled_from([b"\x00\x00\x08\x01", b"\x00\x00\x08\x03", b"\x00\x00\x08\x02", b"\x00\x00\x0d\x03"])
    | st.binary(min_size=0, max_size=4),
    dims=st.lists(st.sampled_from([0, 1, 2, 3, 28, 2**31, 2**32 - 1]), max_size=3),
    payload=st.binary(max_size=64),
    compress=st.booleans(),
    cut=st.none() | st.integers(0, 20),
    ndim=st.none() | st.sampled_from([1, 3]),
)
def test_idx_files(
    folder: Path, magic: bytes, dims: list[int], payload: bytes, compress: bool, cut: int | None, ndim: int | None
) -> None:
    content = magic + b"".join(struct.pack(">I", dim) for dim in dims) + payload
    if compress:
        content = gzip.compress(content)
    if cut is not None:
        content = content[: len(content) - cut]
    path = folder / "fuzzed-idx"
    path.write_bytes(content)
    survives(lambda p: read_idx(p, ndim=ndim), path)


# -- what the fuzzing found, kept as plain examples -------------------------------------------------------------------


def hostile_export(folder: Path, real_export: bytes, *, drop: tuple[str, ...] = (), **changes: str) -> Path:
    header, data = split(real_export)
    header["__metadata__"] = {**header["__metadata__"], **changes}
    for key in drop:  # as a file written before the key existed
        header["__metadata__"].pop(key)
    path = folder / "hostile-export.safetensors"
    path.write_bytes(assemble(header, data))
    return path


def test_options_describing_a_huge_model_are_refused_before_it_is_built(folder: Path, real_export: bytes) -> None:
    """hidden=4096 at 4x1024x1024 is an MLP of 275 GB: the shapes are compared on the meta device first."""
    options = {"hidden": 4096, "image_size": 1024, "channels": 4, "latent_dim": 3, "num_classes": 0}
    path = hostile_export(
        folder,
        real_export,
        drop=("model_card", "content_hash"),  # the card and the hash would catch the edit first
        plugin_options=json.dumps(options),
        image_shape="[4, 1024, 1024]",
    )
    with pytest.raises(ExportError, match=r"does not fit generator 'mlp'.*net\.0\.weight"):
        load_generator(path)


def test_an_output_range_too_big_for_a_float_is_damaged(folder: Path, real_export: bytes) -> None:
    path = hostile_export(folder, real_export, output_range="[1" + "0" * 400 + ", 1]")
    with pytest.raises(ExportError, match="output_range"):
        read_export_metadata(path)


@pytest.mark.parametrize(
    ("skeleton", "why"),
    [
        ({"__numpy__": ["|V8", 2**40]}, "not stored in checkpoints"),  # np.void(2**40) would allocate 1 TB
        ({"__numpy__": ["|i1", 1000]}, "bad numpy scalar"),  # OverflowError
        ({"__ndarray__": "bf16"}, "cannot be a numpy array"),  # numpy has no bfloat16
    ],
)
def test_checkpoint_skeletons_found_by_fuzzing(folder: Path, skeleton: Any, why: str) -> None:
    path = folder / "found.safetensors"
    metadata = {"format": "gankit.checkpoint", "format_version": "1", "state": json.dumps({"x": skeleton})}
    save_file(CHECKPOINT_TENSORS, str(path), metadata=metadata)
    with pytest.raises(CheckpointError, match=why):
        load_checkpoint(path)


def test_the_real_files_are_what_the_fuzzing_mutates(real_export: bytes, real_checkpoint: bytes, folder: Path) -> None:
    """The mutation tests start from files the readers accept, so they explore near valid input."""
    for name, content, version in (("e", real_export, "1"), ("c", real_checkpoint, "2")):
        path = folder / f"{name}.safetensors"
        path.write_bytes(content)
        with safe_open(str(path), framework="pt") as handle:
            assert handle.metadata()["format_version"] == version
    assert read_export_metadata(folder / "e.safetensors").plugin == "mlp"
    assert load_checkpoint(folder / "c.safetensors")["step"] == 7
