"""Tests for dl.plotting: the book's plot helpers, lazy matplotlib, silent in a terminal."""

import subprocess
import sys

import numpy as np
import pytest

from dl import plotting

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")


def modules_after(statement):
    code = f"{statement}\nimport sys\nprint('matplotlib' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.parametrize("module", ["dl", "dl.plotting", "dl.progress"])
def test_importing_imports_no_matplotlib(module):
    assert modules_after(f"import {module}") == "False"


@pytest.mark.slow
def test_importing_a_backend_imports_no_matplotlib_until_plt_is_used():
    assert modules_after("import dl.torch") == "False"
    assert modules_after("import dl.torch\ndl.torch.plt") == "True"


def test_plt_is_pyplot_and_other_names_are_missing():
    from matplotlib import pyplot

    assert plotting.plt is pyplot
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        plotting.nope  # noqa: B018


@pytest.fixture
def axes():
    from matplotlib.figure import Figure

    return Figure().subplots()


def test_plot_one_series_against_its_index_returns_none_and_prints_nothing(axes, capsys):
    assert plotting.plot([3.0, 1.0, 2.0], xlabel="x", ylabel="y", axes=axes) is None
    assert capsys.readouterr() == ("", "")
    (line,) = axes.get_lines()
    np.testing.assert_array_equal(line.get_xdata(), [0, 1, 2])
    np.testing.assert_array_equal(line.get_ydata(), [3, 1, 2])
    assert (axes.get_xlabel(), axes.get_ylabel()) == ("x", "y")
    assert axes.get_legend() is None


def test_plot_shares_one_x_across_series_with_formats_scales_limits_and_legend(axes):
    x = np.arange(1, 5)
    plotting.plot(
        x,
        [x**2, x**3],
        legend=["square", "cube"],
        xlim=[1, 4],
        ylim=[1, 64],
        xscale="log",
        yscale="log",
        axes=axes,
    )
    square, cube = axes.get_lines()
    np.testing.assert_array_equal(cube.get_xdata(), x)
    np.testing.assert_array_equal(cube.get_ydata(), x**3)
    assert (square.get_linestyle(), cube.get_linestyle(), cube.get_color()) == ("-", "--", "m")
    assert (axes.get_xscale(), axes.get_yscale()) == ("log", "log")
    assert axes.get_xlim() == (1, 4) and axes.get_ylim() == (1, 64)
    assert [t.get_text() for t in axes.get_legend().get_texts()] == ["square", "cube"]


def test_plot_clears_the_axes_first(axes):
    plotting.plot([1.0, 2.0], axes=axes)
    plotting.plot([[1.0, 2.0], [2.0, 1.0]], axes=axes)
    assert len(axes.get_lines()) == 2


def test_plot_takes_framework_tensors():
    torch = pytest.importorskip("torch")
    from matplotlib.figure import Figure

    axes = Figure().subplots()
    plotting.plot(torch.arange(3.0), [torch.ones(3)], axes=axes)
    np.testing.assert_array_equal(axes.get_lines()[0].get_ydata(), [1, 1, 1])


def test_plot_on_the_current_pyplot_axes_with_the_figure_size():
    from matplotlib import pyplot

    pyplot.close("all")
    plotting.plot([1.0, 2.0], figsize=(6, 3))
    assert tuple(pyplot.gcf().get_size_inches()) == (6, 3)
    assert len(pyplot.gca().get_lines()) == 1
    pyplot.close("all")


def test_use_svg_display_sets_svg_only_in_a_notebook(monkeypatch):
    calls = []
    import matplotlib_inline.backend_inline as inline

    monkeypatch.setattr(inline, "set_matplotlib_formats", lambda *fmts: calls.append(fmts))
    monkeypatch.setattr(plotting, "in_notebook", lambda: False)
    plotting.use_svg_display()
    assert calls == []
    monkeypatch.setattr(plotting, "in_notebook", lambda: True)
    plotting.use_svg_display()
    assert calls == [("svg",)]


@pytest.mark.slow
def test_plot_shows_inline_as_svg_in_jupyter(monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel picks its inline backend
    notebook = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell(
                "from dl import plotting as d2l\n"
                "d2l.plot([1.0, 2.0, 4.0], xlabel='x', yscale='log')"
            )
        ]
    )
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3").execute()
    outputs = notebook.cells[0].outputs
    # the figure, shown once as SVG; no execute_result (plot returns None, nothing echoed)
    assert [out.output_type for out in outputs] == ["display_data"]
    assert "<svg" in outputs[0].data["image/svg+xml"]
