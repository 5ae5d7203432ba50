"""The book's chapters 9.5-9.7 (machine translation, encoder-decoder, seq2seq) run to their
end on ``dl``: each script of ``../shared/book/`` in a subprocess, its epochs cut, the
``fra-eng`` archive (a small stand-in, :mod:`fra_eng`) served from 127.0.0.1 through a
``DL_DATA_HUB`` file, plots on Agg."""

import ast
import importlib
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fra_eng import serve_fra_eng

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT.parent / "shared" / "book"
FRAMEWORKS = {"pytorch": "torch", "tensorflow": "tensorflow"}
# the book trains 300 epochs; its TensorFlow loop is eager (about 10 s an epoch here)
SEQ2SEQ_EPOCHS = {"pytorch": 50, "tensorflow": 5}
MAX_LOSS = {"pytorch": 0.3, "tensorflow": 0.35, "jax": 0.3}  # untrained: ln V / num_steps, 0.4
CHAPTER_EPOCHS = "lr, num_epochs, device = 0.005, 300, d2l.try_gpu()"
SENTENCES = ["go .", "i lost .", "he's calm .", "i'm home ."]

pytestmark = pytest.mark.slow


def _script(chapter, edition):
    path = BOOK / f"{chapter}_{edition}.py"
    framework = FRAMEWORKS[edition]
    if not path.is_file():
        pytest.skip(f"{path} is not here (the book's scripts live in ../shared/book)")
    if importlib.util.find_spec(framework) is None:
        pytest.skip(f"{framework} is not installed")
    text = path.read_text()
    missing = _missing_names(text, framework)
    if missing:
        pytest.skip(
            f"dl.{framework} lacks the book names {', '.join(missing)} "
            "(tensor aliases and plotting helpers come with the book-helpers work)"
        )
    return text


def _missing_names(text, framework):
    """The ``d2l.NAME`` attributes the script uses that ``dl.<framework>`` does not have."""
    names = {
        node.attr
        for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "d2l"
    }
    if not names:
        return []
    module = importlib.import_module(f"dl.{framework}")
    return sorted(name for name in names if not hasattr(module, name))


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    with serve_fra_eng(tmp_path_factory.mktemp("fra-eng")) as hub_file:
        yield hub_file


def _run(text, tmp_path, mirror):
    script = tmp_path / "chapter.py"
    script.write_text(text)
    env = dict(
        os.environ,
        DL_DATA_DIR=str(tmp_path / "data"),
        DL_DATA_HUB=str(mirror),
        MPLBACKEND="Agg",
        no_proxy="127.0.0.1",
        NO_PROXY="127.0.0.1",
        OMP_NUM_THREADS="1",
        TF_CPP_MIN_LOG_LEVEL="3",  # 2 shared cores: no oversubscription
        PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
    )
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    for garbage in ("<Figure", "Figure(", "matplotlib", "\x1b["):
        assert garbage not in result.stdout, result.stdout
    return result.stdout


@pytest.mark.parametrize("edition", FRAMEWORKS)
def test_machine_translation_chapter(edition, tmp_path, mirror):
    out = _run(_script("machine-translation-and-dataset", edition), tmp_path, mirror)
    lines = out.splitlines()
    assert lines[0] == "Go.\tVa\u202f!"  # raw_text[:75]
    assert "go .\tva !\nhi .\tsalut !\nrun !\tcours !" in out  # text[:80], preprocessed
    for label in ("X:", "valid lengths for X:", "Y:", "valid lengths for Y:"):
        assert any(line.startswith(label) for line in lines), label
    rows = re.findall(r"\[\s*((?:\d+,?\s*){8})\]", out)  # batch_size=2 rows of num_steps=8
    assert len(rows) >= 4, out
    assert (tmp_path / "data" / "fra-eng" / "fra.txt").is_file()


@pytest.mark.parametrize("edition", FRAMEWORKS)
def test_encoder_decoder_chapter(edition, tmp_path, mirror):
    assert _run(_script("encoder-decoder", edition), tmp_path, mirror) == ""


@pytest.mark.parametrize("edition", FRAMEWORKS)
def test_seq2seq_chapter(edition, tmp_path, mirror):
    text = _with_epochs(_script("seq2seq", edition), SEQ2SEQ_EPOCHS[edition])
    _assert_trains_and_translates(_run(text, tmp_path, mirror), MAX_LOSS[edition])


def test_seq2seq_jax_example(tmp_path, mirror):
    pytest.importorskip("jax")
    text = (ROOT / "examples" / "seq2seq_jax.py").read_text()
    _assert_trains_and_translates(_run(_with_epochs(text, 30), tmp_path, mirror), MAX_LOSS["jax"])


def _with_epochs(text, num_epochs):
    assert text.count(CHAPTER_EPOCHS) == 1
    return text.replace(CHAPTER_EPOCHS, CHAPTER_EPOCHS.replace("300", str(num_epochs)))


def _assert_trains_and_translates(out, max_loss):
    lines = out.splitlines()
    loss = [line for line in lines if line.startswith("loss ")]
    # the TF edition prints str(try_gpu()), a device context's repr, as the book does
    assert len(loss) == 1 and re.fullmatch(r"loss \d+\.\d{3}, \d+\.\d tokens/sec on .+", loss[0])
    assert float(loss[0].split()[1].rstrip(",")) < max_loss
    translations = [line for line in lines if " => " in line]
    assert [line.split(" => ")[0] for line in translations] == SENTENCES
    for line in translations:
        assert re.fullmatch(r".+ => .*, bleu [01]\.\d{3}", line), line
