"""The book's recurrent chapters (d2l 0.17.6 code, ``../shared/book/``) run unchanged on ``dl``.

Each chapter script runs in a fresh process from its own directory, with epochs cut (the
number in ``num_epochs, lr = 500, ...`` replaced, nothing else changed), as a notebook would
run it: a bare expression that ends a cell (the scripts separate cells by blank lines) has its
value printed. The tests assert on what the chapter prints.
"""

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BOOK_DIR = Path(__file__).resolve().parents[2] / "shared" / "book"
EPOCHS = 10  # the chapters print a continuation every 10 epochs
TIMEOUT_S = 600

# Runs a chapter as a notebook would show it: argv = script path, number of epochs.
RUN_AS_NOTEBOOK = r"""
import ast, re, sys
path, epochs = sys.argv[1], sys.argv[2]
source = open(path).read()
source = re.sub(r"num_epochs, lr = \d+,", f"num_epochs, lr = {epochs},", source)
lines = source.splitlines() + [""]
namespace = {"__name__": "__main__"}
for node in ast.parse(source, path).body:
    if isinstance(node, ast.Expr) and not lines[node.end_lineno].strip():
        value = eval(compile(ast.Expression(node.value), path, "eval"), namespace)
        if value is not None:
            print(repr(value))
    else:
        exec(compile(ast.Module([node], []), path, "exec"), namespace)
"""

SUMMARY = re.compile(r"^perplexity (\d+\.\d), (\d+\.\d) tokens/sec on (\S+)$", re.MULTILINE)
DEVICES = {"pytorch": re.compile(r"cpu|cuda:\d+"), "tensorflow": re.compile(r"/(CPU|GPU):\d+")}
FRAMEWORK_MODULE = {"pytorch": "torch", "tensorflow": "tensorflow"}
FIGURE_REPRS = ("<Figure size", "<Axes", "Axes(", "<matplotlib")

# chapter -> how many times it trains a language model (each ends in one summary line)
TRAININGS = {"rnn-scratch": 2, "rnn-concise": 1, "gru": 2, "lstm": 2, "deep-rnn": 1, "bi-rnn": 1}

SCRIPTS = [
    f"{chapter}_{framework}"
    for chapter in (
        "sequence",
        "text-preprocessing",
        "language-models-and-dataset",
        "rnn-scratch",
        "rnn-concise",
        "gru",
        "lstm",
        "deep-rnn",
    )
    for framework in ("pytorch", "tensorflow")
] + ["bi-rnn_pytorch"]


def numpy_refuses_int_of_a_1d_array() -> bool:
    """NumPy 2.4 and later refuse ``int(array of shape (1,))``, which the book's TensorFlow
    ``predict_ch8`` (defined in the RNN-from-scratch chapter itself) relies on."""
    try:
        int(np.array([1]))
    except TypeError:
        return True
    return False


def run_chapter(script: str, epochs: int = EPOCHS) -> subprocess.CompletedProcess:
    framework = script.rsplit("_", 1)[1]
    if importlib.util.find_spec(FRAMEWORK_MODULE[framework]) is None:
        pytest.skip(f"{FRAMEWORK_MODULE[framework]} is not installed")
    path = BOOK_DIR / f"{script}.py"
    if not path.is_file():
        pytest.skip(f"the book's chapter scripts are not here: {path} does not exist")
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = dict(
        os.environ,
        MPLBACKEND="Agg",
        PYTHONPATH=os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]),
    )
    # one thread per process: on a shared 2-core machine torch's two threads spin each other
    # down to a small fraction of their speed
    env.setdefault("OMP_NUM_THREADS", "1")
    return subprocess.run(
        [sys.executable, "-c", RUN_AS_NOTEBOOK, path.name, str(epochs)],
        cwd=BOOK_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )


def vocab_size() -> int:
    from dl.data.text import load_corpus_time_machine

    return len(load_corpus_time_machine()[1])


def assert_clean_terminal_output(result):
    for marker in FIGURE_REPRS:
        assert marker not in result.stdout, f"a figure repr was printed:\n{result.stdout}"
    assert "\x1b[" not in result.stdout, "escape codes in the output of a plain terminal run"


def assert_ran_to_its_end(result):
    assert result.returncode == 0 and "Traceback" not in result.stderr, (
        f"exit status {result.returncode}\n{result.stderr[-4000:]}"
    )
    assert "Traceback" not in result.stdout


def assert_language_model_summaries(stdout, framework, trainings):
    """Each training ends as the book's: the summary line, then the two continuations."""
    summaries = list(SUMMARY.finditer(stdout))
    assert len(summaries) == trainings, stdout
    lines = stdout.splitlines()
    for match in summaries:
        ppl, speed, device = float(match[1]), float(match[2]), match[3]
        assert ppl < 0.7 * vocab_size(), f"perplexity {ppl} is not well below {vocab_size()}"
        assert ppl >= 1.0 and speed > 0
        assert DEVICES[framework].fullmatch(device), device
        after = lines[lines.index(match[0]) + 1 :][:2]
        assert after[0].startswith("time traveller") and after[1].startswith("traveller"), after
    continuations = [line for line in lines if line.startswith("time traveller")]
    # one every 10 epochs, then one after each summary
    assert len(continuations) == trainings * (EPOCHS // 10 + 1), stdout


def expected_prints(script):
    """Lines (or parts of lines) the chapter prints whatever the random draws."""
    chapter, framework = script.rsplit("_", 1)
    shape = {"pytorch": "torch.Size({})", "tensorflow": "TensorShape({})"}[framework]
    return {
        "text-preprocessing": [
            "# text lines: 3221",
            "the time machine by h g wells",
            "[('<unk>', 0), ('the', 1), ('i', 2), ('and', 3)",
            "words: ['the', 'time', 'machine', 'by', 'h', 'g', 'wells']",
            "(170580, 28)",
        ],
        "language-models-and-dataset": ["('the', 2261)", "(('of', 'the'), 309)", "X:  ", "Y:"],
        "rnn-scratch": [
            shape.format("[5, 2, 28]"),
            f"({shape.format('[10, 28]')}, 1, {shape.format('[2, 512]')})",
            "'time traveller ",
        ],
        "rnn-concise": [shape.format("[35, 32, 256]"), "'time traveller"],
    }.get(chapter, [])


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS)
def test_chapter_runs_to_its_end_and_prints_what_the_book_prints(script):
    chapter, framework = script.rsplit("_", 1)
    if script == "rnn-scratch_tensorflow" and numpy_refuses_int_of_a_1d_array():
        pytest.skip(
            "the chapter's own predict_ch8 does int() of a (1,) array, which NumPy "
            "2.4+ refuses; see test_tensorflow_rnn_scratch_stops_only_at_its_own_predict"
        )
    result = run_chapter(script)
    assert_ran_to_its_end(result)
    assert_clean_terminal_output(result)
    for expected in expected_prints(script):
        assert expected in result.stdout, f"{expected!r} not printed:\n{result.stdout}"
    if chapter in TRAININGS:
        assert_language_model_summaries(result.stdout, framework, TRAININGS[chapter])
    if chapter == "sequence":
        losses = [
            float(v)
            for v in re.findall(r"^epoch \d+, loss: (\d+\.\d{6})$", result.stdout, re.MULTILINE)
        ]
        # the chapter's data and weights are unseeded: the first epoch's loss varies (0.1-1.3
        # seen); training must bring it down to the noise level
        assert len(losses) == 5 and losses[-1] < min(losses[0], 0.3), result.stdout


@pytest.mark.slow
def test_tensorflow_rnn_scratch_stops_only_at_its_own_predict():
    """On NumPy 2.4+ the TensorFlow RNN-from-scratch chapter runs on dl up to its own
    ``predict_ch8``, whose ``int(y.numpy().argmax(axis=1).reshape(1))`` NumPy refuses."""
    if not numpy_refuses_int_of_a_1d_array():
        pytest.skip("this NumPy converts (1,) arrays with int(); the chapter runs to its end")
    result = run_chapter("rnn-scratch_tensorflow", epochs=1)
    assert result.returncode == 1
    frames = re.findall(r'^  File "(.+)", line (\d+), in (\S+)$', result.stderr, re.MULTILINE)
    assert frames[-1] == ("rnn-scratch_tensorflow.py", "86", "predict_ch8"), result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "TypeError: only 0-dimensional arrays can be converted to Python scalars"
    )
    for expected in expected_prints("rnn-scratch_tensorflow")[:2]:  # dl's part came before
        assert expected in result.stdout, result.stdout
    assert_clean_terminal_output(result)
