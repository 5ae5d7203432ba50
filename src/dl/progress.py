"""Timing, running sums and the live training plot (the book's Timer, Accumulator, Animator)."""

from __future__ import annotations

import io
import os
import sys
import time

import numpy as np

from dl.files import atomic_write


class Timer:
    """Records wall-clock intervals between ``start()`` and ``stop()``."""

    def __init__(self):
        self.times: list[float] = []
        self.start()

    def start(self) -> None:
        self.tik = time.perf_counter()

    def stop(self) -> float:
        """Seconds since the last ``start()``; also recorded in ``times``."""
        self.times.append(time.perf_counter() - self.tik)
        return self.times[-1]

    def avg(self) -> float:
        return sum(self.times) / len(self.times)

    def sum(self) -> float:
        return sum(self.times)

    def cumsum(self) -> list[float]:
        return np.array(self.times).cumsum().tolist()


class Accumulator:
    """Running sums over ``n`` variables."""

    def __init__(self, n: int):
        self.data = [0.0] * n

    def add(self, *args) -> None:
        self.data = [a + float(b) for a, b in zip(self.data, args)]

    def reset(self) -> None:
        self.data = [0.0] * len(self.data)

    def __getitem__(self, idx):
        return self.data[idx]


def in_notebook() -> bool:
    """True inside a Jupyter kernel (not a terminal IPython or plain Python)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython else None
    return getattr(shell, "kernel", None) is not None


class Animator:
    """Plots data as it arrives: a live inline plot in Jupyter, silent in a terminal.

    In every setting the points are kept (``X``, ``Y``) and ``savefig(path)`` writes the plot
    as PNG. Nothing is printed outside Jupyter: no figure reprs, no escape codes.
    """

    def __init__(self, xlabel=None, ylabel=None, legend=None, xlim=None, ylim=None,
                 xscale="linear", yscale="linear", fmts=("-", "m--", "g-.", "r:"),
                 nrows=1, ncols=1, figsize=(3.5, 2.5)):
        self.axes_config = dict(xlabel=xlabel, ylabel=ylabel, legend=list(legend or []),
                                xlim=xlim, ylim=ylim, xscale=xscale, yscale=yscale)
        self.fmts, self.nrows, self.ncols, self.figsize = fmts, nrows, ncols, figsize
        self.X: list[list] | None = None
        self.Y: list[list] | None = None
        self._display = None

    def add(self, x, y) -> None:
        """Append one point per line: ``y`` a number or a sequence, ``x`` shared or per line."""
        if not hasattr(y, "__len__"):
            y = [y]
        n = len(y)
        if not hasattr(x, "__len__"):
            x = [x] * n
        if not self.X:
            self.X = [[] for _ in range(n)]
        if not self.Y:
            self.Y = [[] for _ in range(n)]
        for i, (a, b) in enumerate(zip(x, y)):
            if a is not None and b is not None:
                self.X[i].append(a)
                self.Y[i].append(float(b))
        if in_notebook():
            self._show()

    def figure(self):
        """A fresh matplotlib Figure of the points so far (no pyplot global state)."""
        from matplotlib.figure import Figure

        fig = Figure(figsize=self.figsize)
        axes = fig.subplots(self.nrows, self.ncols, squeeze=False).ravel()
        for x, y, fmt in zip(self.X or [], self.Y or [], self.fmts):
            axes[0].plot(x, y, fmt)
        _set_axes(axes[0], **self.axes_config)
        fig.tight_layout()
        return fig

    def png(self) -> bytes:
        buffer = io.BytesIO()
        self.figure().savefig(buffer, format="png", dpi=100)
        return buffer.getvalue()

    def savefig(self, path: str | os.PathLike) -> None:
        """Write the plot as PNG to ``path`` (atomically: a temporary file, then a rename)."""
        atomic_write(path, self.png())

    def _show(self) -> None:
        from IPython.display import Image, display

        image = Image(data=self.png(), format="png")
        if self._display is None:
            self._display = display(image, display_id=True)
        else:
            self._display.update(image)


def _set_axes(axes, xlabel, ylabel, xlim, ylim, xscale, yscale, legend):
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_xscale(xscale)
    axes.set_yscale(yscale)
    axes.set_xlim(xlim)
    axes.set_ylim(ylim)
    if legend:
        axes.legend(legend)
    axes.grid()
