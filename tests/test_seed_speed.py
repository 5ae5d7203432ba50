"""benchmarks/seed_speed.py: variants take turns, and the table is what the README shows
(structure only; speeds are measured by running the benchmark, never in tests)."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "seed_speed.py"


@pytest.fixture(scope="module")
def seed_speed():
    spec = importlib.util.spec_from_file_location("seed_speed", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_variants_take_turns_after_one_warm_up_each(seed_speed, monkeypatch):
    clock, calls = [0.0], []

    def run(label, seconds):
        def epoch():
            calls.append(label)
            clock[0] += seconds.pop(0)
            return 100
        return epoch

    monkeypatch.setattr(seed_speed.time, "perf_counter", lambda: clock[0])
    speeds = seed_speed.interleaved_speeds(
        {"book": run("book", [9.0, 1.0, 2.0, 4.0]), "fast": run("fast", [9.0, 0.1, 0.2, 0.4])},
        rounds=3)
    assert calls == ["book", "fast"] + ["book", "fast"] * 3
    assert speeds == {"book": pytest.approx(50.0), "fast": pytest.approx(500.0)}


@pytest.mark.slow
def test_table_rows_for_tensorflow(time_machine_path):
    pytest.importorskip("tensorflow")
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--backends", "tensorflow", "--rounds", "1"],
        capture_output=True, text=True, check=True, timeout=900)
    rows = [line for line in result.stdout.splitlines() if line.startswith("| tensorflow")]
    assert [row.split(" | ")[1] for row in rows] == ["scratch", "concise"]
    for row in rows:
        assert "compile=False" in row and "compiled" in row and "x)" in row
