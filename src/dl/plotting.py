"""The book's plotting helpers: ``use_svg_display``, ``set_figsize``, ``set_axes``, ``plot``,
``show_list_len_pair_hist``.

Framework-free (tensors of any framework, NumPy arrays and lists plot alike) and importing this
module imports no matplotlib: ``plt`` (``matplotlib.pyplot``) is loaded on first use.
``plot`` draws on the current pyplot axes, as the book's does: in Jupyter the figure shows
inline under the cell; in a terminal nothing is printed and nothing blocks (``plt.show()`` or
``plt.savefig(path)`` show or keep the figure).
"""

from __future__ import annotations

import sys


def _pyplot():
    from matplotlib import pyplot

    return pyplot


def lazy_plt(module_name: str):
    """A module ``__getattr__`` that gives ``module_name.plt`` as ``matplotlib.pyplot``,
    imported on first use (so that importing the module imports no matplotlib)."""

    def __getattr__(name):
        if name == "plt":
            return _pyplot()
        raise AttributeError(f"module {module_name!r} has no attribute {name!r}")

    return __getattr__


__getattr__ = lazy_plt(__name__)


def in_notebook() -> bool:
    """True inside a Jupyter kernel (not a terminal IPython or plain Python)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython else None
    return getattr(shell, "kernel", None) is not None


def use_svg_display() -> None:
    """In Jupyter, show figures as SVG (the book's choice); elsewhere nothing changes."""
    if in_notebook():
        from matplotlib_inline.backend_inline import set_matplotlib_formats

        set_matplotlib_formats("svg")


def set_figsize(figsize=(3.5, 2.5)) -> None:
    """Set the size, in inches ``(width, height)``, of the figures pyplot creates next."""
    use_svg_display()
    _pyplot().rcParams["figure.figsize"] = figsize


def set_axes(axes, xlabel, ylabel, xlim, ylim, xscale, yscale, legend) -> None:
    """Label, scale and limit a matplotlib ``axes``; add the legend if one is given, and a grid."""
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_xscale(xscale)
    axes.set_yscale(yscale)
    axes.set_xlim(xlim)
    axes.set_ylim(ylim)
    if legend:
        axes.legend(legend)
    axes.grid()


def _has_one_axis(X) -> bool:
    """True for one series: a 1-D array or tensor, or a list of numbers."""
    return (
        getattr(X, "ndim", None) == 1
        or isinstance(X, list)
        and bool(X)
        and not hasattr(X[0], "__len__")
    )


def plot(
    X,
    Y=None,
    xlabel=None,
    ylabel=None,
    legend=None,
    xlim=None,
    ylim=None,
    xscale="linear",
    yscale="linear",
    fmts=("-", "m--", "g-.", "r:"),
    figsize=(3.5, 2.5),
    axes=None,
) -> None:
    """Plot one or more series on ``axes`` (default: pyplot's current axes, cleared first).

    ``X``, ``Y``: a series (1-D array, tensor or list of numbers) or a list of series; with
    ``Y=None`` the series in ``X`` are plotted against their index. One ``X`` is shared by
    every ``Y``. Returns None, so nothing is echoed in a notebook or a REPL.
    """
    set_figsize(figsize)
    axes = axes if axes else _pyplot().gca()
    if _has_one_axis(X):
        X = [X]
    if Y is None:
        X, Y = [[]] * len(X), X
    elif _has_one_axis(Y):
        Y = [Y]
    if len(X) != len(Y):
        X = X * len(Y)
    axes.cla()
    for x, y, fmt in zip(X, Y, fmts):
        if len(x):
            axes.plot(x, y, fmt)
        else:
            axes.plot(y, fmt)
    set_axes(axes, xlabel, ylabel, xlim, ylim, xscale, yscale, legend or [])


def show_list_len_pair_hist(legend, xlabel, ylabel, xlist, ylist) -> None:
    """Histogram of the lengths of the lists in ``xlist`` and ``ylist`` (the second hatched),
    on a new pyplot figure; nothing is shown or printed (``plt.show()`` shows it)."""
    set_figsize()
    plt = _pyplot()
    plt.figure()
    _, _, patches = plt.hist([[len(line) for line in xlist], [len(line) for line in ylist]])
    plt.xlabel(xlabel)
    plt.ylabel(ylabel)
    for patch in patches[1].patches:
        patch.set_hatch("/")
    plt.legend(legend)


def save_png(fig, ax, path) -> None:
    """Finish a ``dl`` command's figure (small legend, faint grid, tight layout) and write it
    to ``path`` as a PNG, atomically."""
    import io

    from dl.files import atomic_write

    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    atomic_write(path, buffer.getvalue())
