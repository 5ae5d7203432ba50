"""benchmarks/seed_speed.py: variants take turns, the book's own library is the baseline when
installed, and the table has the README's form (structure only; speeds are measured by
running the benchmark, never in tests)."""

import importlib.util
import json
import os
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
        rounds=3,
    )
    assert calls == ["book", "fast"] + ["book", "fast"] * 3
    assert speeds == {"book": pytest.approx(50.0), "fast": pytest.approx(500.0)}


BOOK_STUB = """
import json, os

class RNNModelScratch:
    def __init__(self, vocab_size, num_hiddens, init_state, forward_fn, get_params):
        self.kind, self.vocab_size = "scratch", vocab_size

class RNNModel:
    def __init__(self, rnn_layer, vocab_size):
        self.kind, self.vocab_size = ("concise", rnn_layer.time_major), vocab_size

def train_epoch_ch8(net, train_iter, loss, updater, use_random_iter):
    batches = [(type(X).__name__, list(X.shape)) for X, Y in train_iter]
    with open(os.environ["BOOK_STUB_LOG"], "a") as log:
        log.write(json.dumps([net.kind, net.vocab_size, batches, use_random_iter]) + "\\n")
    return 1.0, 1.0
"""


def book_stub(root, tensorflow_module=BOOK_STUB, version="0.17.6"):
    """A package ``d2l`` under ``root`` that stands in for the book's library."""
    (root / "d2l").mkdir()
    (root / "d2l" / "__init__.py").write_text(f"__version__ = {version!r}\n")
    (root / "d2l" / "tensorflow.py").write_text(tensorflow_module)
    return root


@pytest.mark.slow
def test_tensorflow_rows_time_the_books_own_loop_beside_the_re_created_one(
    time_machine_path, tmp_path
):
    pytest.importorskip("tensorflow")
    log = tmp_path / "calls.jsonl"
    env = {
        **os.environ,
        "BOOK_STUB_LOG": str(log),
        "PYTHONPATH": os.pathsep.join([str(book_stub(tmp_path)), os.environ.get("PYTHONPATH", "")]),
    }
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--backends", "tensorflow", "--rounds", "1"],
        capture_output=True,
        text=True,
        check=True,
        timeout=900,
        env=env,
    )
    lines = result.stdout.splitlines()
    assert "| backend | model | book loop | variants |" in lines
    rows = [line.split(" | ") for line in lines if line.startswith("| tensorflow")]
    assert [row[1] for row in rows] == ["scratch", "concise"]
    for row in rows:
        assert row[2].startswith("d2l 0.17.6: ")
        variants = [cell.rsplit(" ", 2)[0] for cell in row[3].rstrip(" |").split(", ")]
        assert variants == ["re-created book loop", "compile=False", "compiled"]
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(calls) == 2 * 2  # per model: a warm-up epoch and one round
    for _, vocab_size, batches, use_random_iter in calls:
        assert vocab_size == 28 and not use_random_iter
        assert batches == [["EagerTensor", [32, 35]]] * 8
    assert [call[0] for call in calls] == [
        "scratch",
        "scratch",
        ["concise", True],
        ["concise", True],
    ]


def test_a_partial_install_of_the_books_library_falls_back_with_a_note(
    seed_speed, tmp_path, monkeypatch, capsys
):
    broken = "import matplotlib_inline_that_pip_no_deps_left_out\n"
    monkeypatch.syspath_prepend(str(book_stub(tmp_path, broken)))
    monkeypatch.delitem(sys.modules, "d2l", raising=False)
    assert seed_speed._d2l_tensorflow() == (None, None)
    assert (
        "not timing the book's own library (ModuleNotFoundError: No module named "
        "'matplotlib_inline_that_pip_no_deps_left_out'); the book loop is the re-created "
        "one"
    ) in capsys.readouterr().err
    for name in ("d2l", "d2l.tensorflow"):
        sys.modules.pop(name, None)


def test_another_version_of_the_books_library_is_not_the_baseline(
    seed_speed, tmp_path, monkeypatch, capsys
):
    monkeypatch.syspath_prepend(str(book_stub(tmp_path, BOOK_STUB, version="1.0.3")))
    monkeypatch.delitem(sys.modules, "d2l", raising=False)
    assert seed_speed._d2l_tensorflow() == (None, None)
    assert "d2l 1.0.3 is installed; the baseline is d2l 0.17" in capsys.readouterr().err
    sys.modules.pop("d2l", None)
