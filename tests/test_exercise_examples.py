"""The exercise examples run end to end with tiny settings (examples/lstm_output_tanh.py,
examples/word_level.py)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("time_machine_path")]


def run_example(name, *args):
    pytest.importorskip("torch")
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *map(str, args)],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_output_tanh_example_records_ranges_and_curves(tmp_path):
    out = run_example(
        "lstm_output_tanh.py",
        "--epochs",
        2,
        "--probes",
        1,
        "--hidden",
        8,
        "--max-tokens",
        1500,
        "--val-fraction",
        0.2,
        "--out",
        tmp_path,
    )
    records = json.loads((tmp_path / "ranges.json").read_text())
    assert [(r["model"], r["epoch"]) for r in records] == [
        ("tanh", 1),
        ("tanh", 2),
        ("no-tanh", 1),
        ("no-tanh", 2),
    ]
    for r in records:
        for name in ("H", "C"):
            stats = r[name]
            assert stats["min"] <= 0 <= stats["max"]
            assert 0 < stats["p999_abs"] <= max(-stats["min"], stats["max"])
            assert 0 <= stats["share_abs_over_1"] <= 1
        assert r["perplexity"] > 1 and r["val_perplexity"] > 1
    assert all(-1 < r["H"]["min"] and r["H"]["max"] < 1 for r in records if r["model"] == "tanh")
    table = (tmp_path / "ranges.md").read_text()
    assert table.count("| H = O tanh(C) |") == 2 and table.count("| H = O C |") == 2
    assert (tmp_path / "perplexity.png").read_bytes().startswith(b"\x89PNG")
    assert len(out.splitlines()) == 4 + 1


def test_word_level_example_generates_words(tmp_path):
    out = run_example(
        "word_level.py",
        "--epochs",
        1,
        "--hidden",
        8,
        "--max-tokens",
        3000,
        "--num",
        6,
        "--out",
        tmp_path,
    )
    lines = out.splitlines()[1:]  # after "training 1 epochs in ..."
    assert (
        lines[0].startswith("vocabulary: ") and " words seen at least 2 times and <unk>" in lines[0]
    )
    assert "2,700 training and 300 validation words" in lines[0]
    assert lines[1].startswith("best validation perplexity ")
    for line, label in zip(lines[2:], ("greedy:  ", "sampled: ")):
        assert line.startswith(label + "the time traveller ")
        words = line[len(label) :].split()
        assert len(words) == 3 + 6 and "<unk>" not in words
    assert (tmp_path / "best.safetensors").is_file()
