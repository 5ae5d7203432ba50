"""The seed chapter, as written, runs on dl and learns: as a script (TensorFlow and PyTorch
editions) and in a Jupyter kernel."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SEED_EPOCHS = "num_epochs, lr = 500, 1"
PERPLEXITY_LINE = re.compile(r"^perplexity (\d+\.\d), (\d+\.\d) tokens/sec on (\S+)$", re.M)
SEED_TEST_EPOCHS = 40
# (scratch, concise) perplexity bounds after 40 epochs, calibrated from real runs on a 2-core
# CPU: TensorFlow (3 runs) 15.67-15.70 and 11.06-11.43; PyTorch (3 runs) 15.6-15.7 and
# 12.1-12.3; JAX (fixed key, 4 runs) 15.6 and 12.4-12.5. An untrained model sits at 28 (the
# vocabulary size) and one that only learns character frequencies stays near 17.4, where all
# models still are at epoch 20.
EDITIONS = {
    "lstm_tensorflow.py": ("tensorflow", 16.2, 12.0),
    "lstm_torch.py": ("torch", 16.3, 13.2),
    "lstm_jax.py": ("jax", 16.2, 13.2),
}

pytestmark = pytest.mark.slow


def device_of_the_book(framework: str) -> str:
    """The device that the chapter's ``dl.try_gpu()`` picks here, as training reports it."""
    if framework == "torch":
        import torch

        return "cuda:0" if torch.cuda.device_count() else "cpu"
    if framework == "tensorflow":
        import tensorflow as tf

        return "/GPU:0" if tf.config.list_physical_devices("GPU") else "/CPU:0"
    import jax

    return "gpu:0" if jax.default_backend() == "gpu" else "cpu:0"


def _seed_with_epochs(source: str, epochs: int) -> str:
    assert source.count(SEED_EPOCHS) == 1, "the seed's epoch line changed"
    return source.replace(SEED_EPOCHS, f"num_epochs, lr = {epochs}, 1")


@pytest.mark.parametrize("example", sorted(EDITIONS))
def test_chapter_script_runs_as_written_and_learns(example):
    framework, max_scratch, max_concise = EDITIONS[example]
    pytest.importorskip(framework)
    code = _seed_with_epochs((EXAMPLES / example).read_text(), SEED_TEST_EPOCHS)
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    perplexities = [float(m.group(1)) for m in PERPLEXITY_LINE.finditer(result.stdout)]
    assert len(perplexities) == 2, result.stdout
    devices = [m.group(3) for m in PERPLEXITY_LINE.finditer(result.stdout)]
    assert devices == [device_of_the_book(framework)] * 2
    assert perplexities[0] < max_scratch, perplexities
    assert perplexities[1] < max_concise, perplexities
    # per model: a continuation every 10 epochs, the summary line, two continuations
    per_model = SEED_TEST_EPOCHS // 10 + 3
    assert len(lines) == 2 * per_model, result.stdout
    for model in (lines[:per_model], lines[per_model:]):
        progress, summary, (first, second) = model[:-3], model[-3], model[-2:]
        assert all(line.startswith("time traveller") and len(line) == 14 + 50 for line in progress)
        assert PERPLEXITY_LINE.match(summary)
        assert first.startswith("time traveller") and len(first) == 14 + 50
        assert second.startswith("traveller") and len(second) == 9 + 50
    assert "<Figure" not in result.stdout and "\x1b[" not in result.stdout


def test_seed_notebook_runs_in_jupyter_with_live_plot():
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.read(EXAMPLES / "lstm_tensorflow.ipynb", as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code" and SEED_EPOCHS in cell.source:
            cell.source = _seed_with_epochs(cell.source, 20)
    nbclient.NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(EXAMPLES)}},
    ).execute()
    outputs = [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs]
    assert not [out for out in outputs if out.output_type == "error"]
    text = "".join(out.get("text", "") for out in outputs if out.output_type == "stream")
    devices = [m[2] for m in PERPLEXITY_LINE.findall(text)]
    assert devices == [device_of_the_book("tensorflow")] * 2, text
    images = [out for out in outputs if "image/png" in out.get("data", {})]
    assert len(images) == 2  # one live plot per training run, updated in place
    reprs = "".join(str(out.get("data", {}).get("text/plain", "")) for out in outputs)
    assert "<Figure" not in reprs + text
