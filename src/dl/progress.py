"""Timing, running sums and the live training plot (the book's Timer, Accumulator, Animator)."""

from __future__ import annotations

import io
import os
import time

import numpy as np

from dl.files import atomic_write
from dl.plotting import in_notebook, set_axes


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


def _detached(value):
    """``value`` without its autograd graph if it has one (a torch tensor), else itself."""
    detach = getattr(value, "detach", None)
    return detach() if callable(detach) else value


class Accumulator:
    """Running sums over ``n`` variables."""

    def __init__(self, n: int):
        self.data = [0.0] * n

    def add(self, *args) -> None:
        """Add one number (or 0-d tensor of any framework, detached first) per variable."""
        self.data = [a + float(_detached(b)) for a, b in zip(self.data, args)]

    def reset(self) -> None:
        self.data = [0.0] * len(self.data)

    def __getitem__(self, idx):
        return self.data[idx]


class Animator:
    """Plots data as it arrives: a live inline plot in Jupyter, silent in a terminal.

    In every setting the points are kept (``X``, ``Y``) and ``savefig(path)`` writes the plot
    as PNG. Nothing is printed outside Jupyter: no figure reprs, no escape codes.
    """

    def __init__(
        self,
        xlabel=None,
        ylabel=None,
        legend=None,
        xlim=None,
        ylim=None,
        xscale="linear",
        yscale="linear",
        fmts=("-", "m--", "g-.", "r:"),
        nrows=1,
        ncols=1,
        figsize=(3.5, 2.5),
    ):
        self.axes_config = dict(
            xlabel=xlabel,
            ylabel=ylabel,
            legend=list(legend or []),
            xlim=xlim,
            ylim=ylim,
            xscale=xscale,
            yscale=yscale,
        )
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
        set_axes(axes[0], **self.axes_config)
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
