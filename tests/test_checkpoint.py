"""Training checkpoints: exact round trips of everything a resumable run saves, and no pickle anywhere."""

from __future__ import annotations

import json
import math
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file
from torch import nn

from gankit.errors import CheckpointError
from gankit.files import flatten_state, load_checkpoint, read_checkpoint_metadata, save_checkpoint, unflatten_state


def assert_identical(a: Any, b: Any, path: str = "") -> None:
    """Equal values of equal types all the way down (NaN equals NaN; int keys stay int; tuples stay tuples)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor), path
        assert a.dtype == b.dtype, path
        assert a.shape == b.shape, path
        assert torch.equal(a, b) or (a.is_floating_point() and torch.equal(a.isnan(), b.isnan())), path
        return
    if isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray), path
        assert a.dtype == b.dtype, path
        np.testing.assert_array_equal(a, b)
        return
    assert type(a) is type(b) or (isinstance(a, dict) and isinstance(b, dict)), f"{path}: {type(a)} vs {type(b)}"
    if isinstance(a, dict):
        assert list(a.keys()) == list(b.keys()), path
        assert [type(k) for k in a] == [type(k) for k in b], path
        for key in a:
            assert_identical(a[key], b[key], f"{path}/{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_identical(x, y, f"{path}/{i}")
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b), path
    else:
        assert a == b, path


def round_trip(state: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    path = tmp_path / "state.safetensors"
    save_checkpoint(path, state)
    return load_checkpoint(path)


# -- a real training loop ------------------------------------------------------------------------------------------


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 1))


def train(model: nn.Module, optimizer: torch.optim.Optimizer, steps: range) -> None:
    model.train()
    for step in steps:
        data = torch.Generator().manual_seed(step)
        x = torch.randn(16, 4, generator=data)
        y = torch.randn(16, 1, generator=data)
        optimizer.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()


def test_model_and_adam_round_trip_exactly(tmp_path: Path) -> None:
    model = make_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2, betas=(0.5, 0.999))
    train(model, optimizer, range(3))
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": 3}
    restored = round_trip(state, tmp_path)
    assert_identical(state, restored)
    assert set(restored["optimizer"]["state"]) == {0, 1, 2, 3, 4, 5}
    assert restored["optimizer"]["param_groups"][0]["betas"] == (0.5, 0.999)


def test_resuming_from_a_checkpoint_is_bit_identical_to_not_stopping(tmp_path: Path) -> None:
    model = make_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    train(model, optimizer, range(6))

    first = make_model()
    first_optimizer = torch.optim.Adam(first.parameters(), lr=1e-2)
    train(first, first_optimizer, range(3))
    path = tmp_path / "ckpt.safetensors"
    save_checkpoint(path, {"model": first.state_dict(), "optimizer": first_optimizer.state_dict()})
    del first, first_optimizer

    resumed = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 1))  # different init
    resumed_optimizer = torch.optim.Adam(resumed.parameters(), lr=0.5)
    state = load_checkpoint(path)
    resumed.load_state_dict(state["model"])
    resumed_optimizer.load_state_dict(state["optimizer"])
    train(resumed, resumed_optimizer, range(3, 6))

    for (name, expected), (_, actual) in zip(model.state_dict().items(), resumed.state_dict().items(), strict=True):
        assert torch.equal(expected, actual), name


def test_grad_scaler_state_round_trips(tmp_path: Path) -> None:
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=3)
    model = nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(4):
        optimizer.zero_grad()
        scaler.scale(model(torch.ones(1, 2)).sum()).backward()
        scaler.step(optimizer)
        scaler.update()
    state = scaler.state_dict()
    restored = round_trip({"scaler": state}, tmp_path)["scaler"]
    assert_identical(state, restored)
    fresh = torch.amp.GradScaler("cpu")
    fresh.load_state_dict(restored)
    assert fresh.state_dict() == state


def test_python_random_state_round_trips(tmp_path: Path) -> None:
    random.seed(42)
    random.random()
    state = random.getstate()
    expected = [random.random() for _ in range(5)]
    restored = round_trip({"python": state}, tmp_path)["python"]
    assert_identical(state, restored)
    random.setstate(restored)
    assert [random.random() for _ in range(5)] == expected


def test_torch_rng_state_round_trips(tmp_path: Path) -> None:
    torch.manual_seed(7)
    torch.rand(3)
    state = torch.get_rng_state()
    expected = torch.rand(5)
    restored = round_trip({"torch": state}, tmp_path)["torch"]
    assert restored.dtype == torch.uint8
    torch.set_rng_state(restored)
    assert torch.equal(torch.rand(5), expected)


def test_numpy_rng_states_round_trip(tmp_path: Path) -> None:
    np.random.seed(3)
    legacy = np.random.get_state()
    expected = np.random.random(4)
    rng = np.random.default_rng(5)
    modern = rng.bit_generator.state
    expected_modern = rng.random(4)
    restored = round_trip({"legacy": legacy, "modern": modern}, tmp_path)
    assert_identical(legacy, restored["legacy"])
    np.random.set_state(restored["legacy"])
    np.testing.assert_array_equal(np.random.random(4), expected)
    again = np.random.default_rng()
    again.bit_generator.state = restored["modern"]
    np.testing.assert_array_equal(again.random(4), expected_modern)


# -- the mechanism -------------------------------------------------------------------------------------------------


def test_flatten_produces_path_keys_and_json_skeleton() -> None:
    weight = torch.ones(2)
    tensors, skeleton = flatten_state({"optimizer_g": {"state": {0: {"exp_avg": weight}}}})
    assert list(tensors) == ["optimizer_g/state/0/exp_avg"]
    assert tensors["optimizer_g/state/0/exp_avg"] is weight
    assert json.loads(json.dumps(skeleton, allow_nan=False)) == skeleton
    assert skeleton == {
        "optimizer_g": {"state": {"__dict__": [[0, {"exp_avg": {"__tensor__": "optimizer_g/state/0/exp_avg"}}]]}}
    }


def test_awkward_values_round_trip(tmp_path: Path) -> None:
    base = torch.arange(12.0)
    state = {
        "floats": [1.5, -0.0, float("inf"), float("-inf"), float("nan"), 1e-310, 2.0**60],
        "ints": [0, -1, 2**80],
        "scalars": [None, True, False, "", "ünïcode"],
        "mixed_keys": {1: "a", "1": "b", -3: ("x", [])},
        "marker_lookalikes": {"__tensor__": "not a tensor", "__tuple__": [1]},
        "tuples": ((), (1,), ((2, 3), [4])),
        "empty": {"dict": {}, "list": [], "tensor": torch.empty(0, 3)},
        "views": {"a": base[2:5], "b": base.view(3, 4).t(), "same": base, "again": base},
        "dtypes": {str(dt): torch.ones(2, dtype=dt) for dt in (torch.int64, torch.bool, torch.bfloat16, torch.uint8)},
        "zero_dim": torch.tensor(3.5),
        "grad": torch.ones(2, requires_grad=True),
        "numpy": {"f": np.float64(0.1), "i": np.int32(-4), "arr": np.arange(6, dtype=np.uint32).reshape(2, 3)},
        "slash/key": torch.zeros(1),
        "slash": {"key": torch.ones(1)},
    }
    restored = round_trip(state, tmp_path)
    assert_identical({**state, "grad": state["grad"].detach()}, restored)
    assert type(restored["numpy"]["f"]) is np.float64
    assert type(restored["numpy"]["i"]) is np.int32


def test_unsupported_values_name_their_path() -> None:
    with pytest.raises(TypeError, match="model/thing"):
        flatten_state({"model": {"thing": object()}})
    with pytest.raises(TypeError, match="key"):
        flatten_state({"d": {(1, 2): 3}})


def test_unflatten_rejects_malformed_skeletons() -> None:
    for bad in ({"__tensor__": "missing"}, {"__tuple__": 3}, {"__float__": "big"}, {"__dict__": [[1]]}):
        with pytest.raises(ValueError):
            unflatten_state({}, bad)


json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5)
structures = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=3)
        | st.tuples(children, children)
        | st.dictionaries(st.text(max_size=4) | st.integers(-5, 5), children, max_size=3)
    ),
    max_leaves=12,
)


@settings(max_examples=60, deadline=None)
@given(structures)
def test_flatten_unflatten_is_an_exact_inverse(value: Any) -> None:
    tensors, skeleton = flatten_state(value)
    encoded = json.dumps(skeleton, allow_nan=False)
    assert_identical(value, unflatten_state(tensors, json.loads(encoded)))


# -- the file ------------------------------------------------------------------------------------------------------


def test_checkpoint_file_is_safetensors_with_a_json_header_and_no_pickle(tmp_path: Path) -> None:
    model = make_model()
    path = tmp_path / "ckpt.safetensors"
    save_checkpoint(path, {"model": model.state_dict(), "rng": random.getstate()}, metadata={"run": "r1"})
    data = path.read_bytes()
    header_len = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + header_len])
    meta = header.pop("__metadata__")
    assert meta["format"] == "gankit.checkpoint"
    assert meta["format_version"] == "2"
    assert meta["run"] == "r1"
    json.loads(meta["state"])
    assert (
        sum(spec["data_offsets"][1] - spec["data_offsets"][0] for spec in header.values()) == len(data) - 8 - header_len
    )
    assert not data.startswith(b"\x80")  # a pickle protocol marker
    assert read_checkpoint_metadata(path) == {"run": "r1"}


def test_the_core_never_unpickles() -> None:
    """Only the hash-checked MNIST pickle is ever unpickled (``gankit.files.load_checked_pickle``)."""
    core = Path(__file__).resolve().parents[1] / "gankit"
    sources = {path: path.read_text() for path in core.rglob("*.py")}
    assert len(sources) > 40
    for path, source in sources.items():
        assert "torch.load(" not in source, path
        if path.name != "_datasets.py":
            assert "import pickle" not in source, path


def test_reserved_metadata_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="state"):
        save_checkpoint(tmp_path / "c.safetensors", {}, metadata={"state": "{}"})


def test_save_replaces_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, {"step": 1})
    save_checkpoint(path, {"step": 2})
    assert load_checkpoint(path) == {"step": 2}

    def broken(tensors: object, filename: str, metadata: object = None) -> None:
        Path(filename).write_bytes(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr("gankit.files._checkpoint.save_file", broken)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"step": 3})
    assert load_checkpoint(path) == {"step": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["c.safetensors"]


def one_line_error(path: Path) -> str:
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_load_errors(tmp_path: Path) -> None:
    assert "no such file" in one_line_error(tmp_path / "absent.safetensors")

    noise = tmp_path / "noise.safetensors"
    noise.write_bytes(os.urandom(2048))
    assert "not a safetensors file" in one_line_error(noise)

    good = tmp_path / "good.safetensors"
    save_checkpoint(good, {"w": torch.arange(100.0)})
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(good.read_bytes()[:-50])
    assert "truncated" in one_line_error(cut)

    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(1)}, plain)
    assert "not a gankit checkpoint" in one_line_error(plain)

    newer = tmp_path / "newer.safetensors"
    save_file({}, newer, metadata={"format": "gankit.checkpoint", "format_version": "999", "state": "{}"})
    assert "newer gankit (format 999); upgrade gankit" in one_line_error(newer)

    broken = tmp_path / "broken.safetensors"
    save_file({}, broken, metadata={"format": "gankit.checkpoint", "format_version": "1", "state": "{oops"})
    assert "'state' is not valid JSON" in one_line_error(broken)

    dangling = tmp_path / "dangling.safetensors"
    skeleton = json.dumps({"w": {"__tensor__": "w"}})
    save_file({}, dangling, metadata={"format": "gankit.checkpoint", "format_version": "1", "state": skeleton})
    assert "not in the file" in one_line_error(dangling)


def test_an_export_is_not_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "export.safetensors"
    save_file({}, path, metadata={"format": "gankit.generator", "format_version": "1"})
    assert "generator export, not a gankit checkpoint" in one_line_error(path)
