"""Tests for the package itself: importing dl (and its core) pulls in no framework."""

import re
import subprocess
import sys

import pytest

import dl

HEAVY = ("tensorflow", "torch", "jax", "keras", "matplotlib")


def imported_after(statement):
    """Top-level names of HEAVY modules in sys.modules after running `statement` afresh."""
    code = (
        f"{statement}\n"
        "import sys\n"
        f'print(",".join(sorted({{m.split(".")[0] for m in sys.modules}} & set({HEAVY!r}))))'
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_import_dl_imports_no_framework_and_no_matplotlib():
    assert imported_after("import dl") == ""


@pytest.mark.parametrize(
    "module",
    [
        "dl.data",
        "dl.data.hub",
        "dl.data.text",
        "dl.data.batches",
        "dl.data.series",
        "dl.metrics",
        "dl.progress",
        "dl.train",
        "dl.book",
        "dl.lm",
        "dl.forecast",
        "dl.checkpoint",
        "dl.flops",
    ],
)
def test_core_modules_import_no_framework_and_no_matplotlib(module):
    assert imported_after(f"import {module}") == ""


def test_the_command_line_parser_imports_no_framework():
    assert imported_after("import dl.cli; dl.cli.parser()") == ""


def test_dl_help_lists_every_command():
    result = subprocess.run(
        [sys.executable, "-m", "dl", "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0
    for command in ("train", "generate", "eval", "sweep", "bench", "forecast"):
        assert command in result.stdout


def test_version_is_a_string():
    assert isinstance(dl.__version__, str)
    assert re.fullmatch(r"\d+\.\d+\.\d+([.-]?\w+)*", dl.__version__)


def test_version_matches_the_installed_distribution():
    from importlib.metadata import PackageNotFoundError, version

    try:
        installed = version("dl-rnn")
    except PackageNotFoundError:
        pytest.skip("dl-rnn is not installed as a distribution")
    assert installed == dl.__version__


def test_ci_checks_the_style_then_runs_the_readme_test_command():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    command = re.search(r"```bash\n(python3 -m venv .venv && [^\n]*-m pytest)\n```", readme)[1]
    ci = (root / ".ci" / "run").read_text().splitlines()
    paths = "src tests benchmarks examples"
    style = [
        ci.index(f".venv/bin/ruff check {paths}"),
        ci.index(f".venv/bin/ruff format --check {paths}"),
    ]
    assert ci[-1] == command and max(style) < len(ci) - 1
    assert "[tool.ruff]" in (root / "pyproject.toml").read_text()
