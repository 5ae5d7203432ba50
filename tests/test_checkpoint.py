"""Checkpoints: exact round trip, atomic writes, and refusal of damaged, foreign or newer files."""

import json

import numpy as np
import pytest

from dl import checkpoint
from dl.files import atomic_write


def params():
    rng = np.random.default_rng(0)
    return {
        "W_xh": rng.standard_normal((5, 3)).astype(np.float32),
        "b_h": np.zeros(3, np.float32),
        "layer2.W_hh": rng.standard_normal((3, 3)),
    }


def test_round_trip_is_exact_and_float32(tmp_path):
    meta = {"epoch": 3, "vocab": ["<unk>", "a", " "], "best_val_loss": None}
    path = checkpoint.save(tmp_path, params(), meta)
    loaded, loaded_meta = checkpoint.load(tmp_path)
    assert path == tmp_path / "model.safetensors"
    assert set(loaded) == set(params())
    for name, value in params().items():
        assert loaded[name].dtype == np.float32
        np.testing.assert_array_equal(loaded[name], value.astype(np.float32))
    assert loaded_meta == {"format": "dl-checkpoint", "format_version": 1, **meta}
    assert json.loads((tmp_path / "model.json").read_text()) == loaded_meta


def test_optimizer_state_rides_in_the_same_file_with_its_shapes(tmp_path):
    state = {"opt.step": np.asarray(7.0, np.float32), "opt.m.W_xh": np.ones((5, 3), np.float32)}
    checkpoint.save(tmp_path, params(), {"epoch": 1}, optimizer_state=state)
    weights, loaded, _ = checkpoint.load_with_optimizer(tmp_path)
    assert set(weights) == set(params()) and set(loaded) == set(state)
    assert loaded["opt.step"].shape == () and float(loaded["opt.step"]) == 7.0  # 0-d stays 0-d
    np.testing.assert_array_equal(loaded["opt.m.W_xh"], state["opt.m.W_xh"])
    assert set(checkpoint.load(tmp_path)[0]) == set(params())  # load: the weights alone
    checkpoint.save(tmp_path, params(), {"epoch": 2})
    assert checkpoint.load_with_optimizer(tmp_path)[1] == {}


def test_stems_are_separate_checkpoints(tmp_path):
    checkpoint.save(tmp_path, params(), {"epoch": 1}, stem="best")
    assert checkpoint.exists(tmp_path, "best") and not checkpoint.exists(tmp_path)
    assert checkpoint.load(tmp_path, "best")[1]["epoch"] == 1


def test_missing_checkpoint_names_the_file(tmp_path):
    with pytest.raises(checkpoint.CheckpointError, match="model.safetensors: no checkpoint there"):
        checkpoint.load(tmp_path)


@pytest.mark.parametrize("keep", [0, 4, 20, -10])
def test_truncated_file_is_refused(tmp_path, keep):
    checkpoint.save(tmp_path, params(), {"epoch": 1})
    path = tmp_path / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[:keep] if keep >= 0 else data[:keep])
    with pytest.raises(
        checkpoint.CheckpointError,
        match=r"model.safetensors: not a readable "
        r"safetensors file .*truncated",
    ):
        checkpoint.load(tmp_path)


def test_foreign_safetensors_file_is_refused(tmp_path):
    from safetensors.numpy import save_file

    save_file({"weight": np.ones(2, np.float32)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(checkpoint.CheckpointError, match="not written by dl"):
        checkpoint.load(tmp_path)


def test_other_format_is_refused(tmp_path):
    from safetensors.numpy import save_file

    save_file(
        {"w": np.ones(2, np.float32)},
        str(tmp_path / "model.safetensors"),
        metadata={"dl": json.dumps({"format": "something-else", "format_version": 1})},
    )
    with pytest.raises(checkpoint.CheckpointError, match="not a dl checkpoint"):
        checkpoint.load(tmp_path)


def test_newer_format_version_is_refused_with_upgrade_advice(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint, "FORMAT_VERSION", 2)
    checkpoint.save(tmp_path, params(), {})
    monkeypatch.setattr(checkpoint, "FORMAT_VERSION", 1)
    with pytest.raises(checkpoint.CheckpointError, match=r"format 2, newer .* `pip install -U"):
        checkpoint.load(tmp_path)


def test_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    checkpoint.save(tmp_path, params(), {"epoch": 1})
    before = (tmp_path / "model.safetensors").read_bytes()

    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr("dl.files.os.replace", fail)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save(tmp_path, {"W_xh": np.zeros((5, 3))}, {"epoch": 2})
    assert (tmp_path / "model.safetensors").read_bytes() == before
    assert checkpoint.load(tmp_path)[1]["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json", "model.safetensors"]


def test_atomic_write_gives_new_files_normal_permissions(tmp_path):
    atomic_write(tmp_path / "a.txt", "hello")
    assert (tmp_path / "a.txt").read_text() == "hello"
    assert (tmp_path / "a.txt").stat().st_mode & 0o077 != 0  # not mkstemp's private 0600
