"""benchmarks/book_speed.py: each side's model is built by the chapter's own definitions, bound
to the library timed (speeds are measured by running the benchmark, never in tests)."""

import importlib.util
import sys
import types
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "book_speed.py"

CHAPTER = """from dl import torch as d2l
import math
from collections import namedtuple

calls = []
calls.append("a statement ran")

def get_params(n):
    return d2l.zeros(n), math.pi

class Model:
    def __init__(self, n):
        self.params = get_params(n)
"""


@pytest.fixture(scope="module")
def book_speed():
    sys.path.insert(0, str(SCRIPT.parent))  # it imports seed_speed, as seq2seq_speed does
    try:
        spec = importlib.util.spec_from_file_location("book_speed", SCRIPT)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(SCRIPT.parent))
    return module


def test_a_chapter_gives_its_imports_functions_and_classes_bound_to_the_library_timed(
    book_speed, tmp_path
):
    (tmp_path / "ch_pytorch.py").write_text(CHAPTER)
    for name in ("book", "dl"):
        library = types.SimpleNamespace(zeros=lambda n, name=name: f"{name} zeros({n})")
        chapter = book_speed.chapter_definitions("ch_pytorch", library, tmp_path)
        assert chapter.d2l is library
        assert chapter.Model(3).params == (f"{name} zeros(3)", pytest.approx(3.14159265))
        assert chapter.namedtuple.__module__ == "collections"
        assert not hasattr(chapter, "calls")  # statements do not run, definitions do


def test_a_missing_chapter_script_is_named(book_speed, tmp_path):
    with pytest.raises(SystemExit, match=r"chapter scripts are not here: .*gru_pytorch\.py"):
        book_speed.chapter_definitions("gru_pytorch", None, tmp_path)
