"""Tests for dl.progress: Timer, Accumulator, Animator (terminal silence, PNG, notebook path)."""

import struct
import subprocess
import sys
import types

import numpy as np
import pytest

from dl import progress
from dl.progress import Accumulator, Animator, Timer, in_notebook


class FakeClock:
    """A perf_counter that returns the given readings in turn."""

    def __init__(self, *readings):
        self.readings = list(readings)

    def perf_counter(self):
        return self.readings.pop(0)


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


# ---------------------------------------------------------------- Timer


def test_timer_with_a_fake_clock(monkeypatch):
    monkeypatch.setattr(progress, "time", FakeClock(10.0, 12.5, 20.0, 21.0, 30.0, 30.5))
    timer = Timer()  # start at 10.0
    assert timer.stop() == 2.5  # 12.5
    timer.start()  # 20.0
    assert timer.stop() == 1.0  # 21.0
    timer.start()  # 30.0
    assert timer.stop() == 0.5  # 30.5
    assert timer.times == [2.5, 1.0, 0.5]
    assert timer.sum() == 4.0
    assert timer.avg() == pytest.approx(4.0 / 3)
    assert timer.cumsum() == [2.5, 3.5, 4.0]


def test_timer_stop_without_restart_measures_from_the_last_start(monkeypatch):
    monkeypatch.setattr(progress, "time", FakeClock(0.0, 1.0, 3.0))
    timer = Timer()
    timer.stop()
    timer.stop()
    assert timer.times == [1.0, 3.0]


def test_timer_real_clock_is_non_negative_and_cumsum_monotone():
    timer = Timer()
    for _ in range(5):
        timer.start()
        sum(range(1000))
        assert timer.stop() >= 0
    assert len(timer.times) == 5
    cumsum = timer.cumsum()
    assert all(a <= b for a, b in zip(cumsum, cumsum[1:]))
    assert cumsum[-1] == pytest.approx(timer.sum())
    assert timer.avg() == pytest.approx(timer.sum() / 5)
    assert isinstance(cumsum, list) and all(isinstance(t, float) for t in cumsum)


def test_timer_avg_without_times_raises():
    timer = Timer()
    assert timer.sum() == 0 and timer.cumsum() == []
    with pytest.raises(ZeroDivisionError):
        timer.avg()


# ---------------------------------------------------------------- Accumulator


def test_accumulator_add_getitem_reset():
    acc = Accumulator(3)
    assert acc.data == [0.0, 0.0, 0.0]
    acc.add(1, 2.5, np.float32(0.5))
    acc.add(np.int64(2), 0.5, 1)
    assert acc.data == [3.0, 3.0, 1.5]
    assert all(isinstance(v, float) for v in acc.data)
    assert acc[0] == 3.0 and acc[2] == 1.5 and acc[-1] == 1.5
    assert acc[0:2] == [3.0, 3.0]
    acc.reset()
    assert acc.data == [0.0, 0.0, 0.0]
    acc.add(4, 5, 6)
    assert acc.data == [4.0, 5.0, 6.0]


def test_accumulator_sums_many_values_exactly():
    acc = Accumulator(2)
    for i in range(100):
        acc.add(i, 1)
    assert acc[0] == 4950.0 and acc[1] == 100.0


# ---------------------------------------------------------------- in_notebook


def test_in_notebook_false_in_plain_python():
    assert in_notebook() is False


def test_in_notebook_false_in_terminal_ipython(monkeypatch):
    fake = types.ModuleType("IPython")
    fake.get_ipython = lambda: types.SimpleNamespace()  # a shell without a kernel
    monkeypatch.setitem(sys.modules, "IPython", fake)
    assert in_notebook() is False
    fake.get_ipython = lambda: None  # IPython imported, no shell running
    assert in_notebook() is False


def test_in_notebook_true_in_a_kernel(monkeypatch):
    fake = types.ModuleType("IPython")
    fake.get_ipython = lambda: types.SimpleNamespace(kernel=object())
    monkeypatch.setitem(sys.modules, "IPython", fake)
    assert in_notebook() is True


# ---------------------------------------------------------------- Animator


def test_animator_single_line_records_points_and_prints_nothing(capsys):
    animator = Animator(xlabel="epoch", ylabel="perplexity", legend=["train"], xlim=[1, 10])
    assert animator.X is None and animator.Y is None
    for epoch, ppl in [(1, 20.5), (2, np.float32(12.25)), (3, 8)]:
        animator.add(epoch, ppl)
    assert animator.X == [[1, 2, 3]]
    assert animator.Y == [[20.5, 12.25, 8.0]]
    assert all(isinstance(y, float) for y in animator.Y[0])
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_animator_multiple_lines_shared_and_per_line_x(capsys):
    animator = Animator(legend=["train loss", "train acc", "test acc"])
    animator.add(1, [0.9, 0.5, None])  # None: no point for that line
    animator.add(2, (0.7, 0.6, 0.55))
    animator.add([3, 3.5, 4], [0.6, None, 0.65])
    assert animator.X == [[1, 2, 3], [1, 2], [2, 4]]
    assert animator.Y == [[0.9, 0.7, 0.6], [0.5, 0.6], [0.55, 0.65]]
    assert capsys.readouterr() == ("", "")


def test_animator_add_a_one_element_list(capsys):
    animator = Animator()
    animator.add(10, [3.0])
    animator.add(20, [2.0])
    assert animator.X == [[10, 20]] and animator.Y == [[3.0, 2.0]]
    assert capsys.readouterr() == ("", "")


def test_animator_savefig_writes_a_png_and_no_temp_file(tmp_path, capsys):
    animator = Animator(
        xlabel="epoch", ylabel="perplexity", legend=["train"], xlim=[10, 50], yscale="log"
    )
    for epoch in range(10, 60, 10):
        animator.add(epoch, [100 / epoch])
    path = tmp_path / "perplexity.png"
    animator.savefig(path)
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG")
    assert png_size(data) == (350, 250)  # figsize (3.5, 2.5) at 100 dpi
    assert sorted(p.name for p in tmp_path.iterdir()) == ["perplexity.png"]
    assert capsys.readouterr() == ("", "")


def test_animator_savefig_str_path_overwrites_and_custom_size(tmp_path):
    path = tmp_path / "plot.png"
    path.write_bytes(b"old content")
    animator = Animator(figsize=(4, 3), legend=["a", "b"])
    animator.add(1, [1, 2])
    animator.add(2, [2, 1])
    animator.savefig(str(path))
    data = path.read_bytes()
    assert png_size(data) == (400, 300)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plot.png"]


def test_animator_savefig_without_points(tmp_path):
    path = tmp_path / "empty.png"
    Animator().savefig(path)
    assert path.read_bytes().startswith(b"\x89PNG")


def test_animator_png_bytes():
    animator = Animator()
    animator.add(1, 1.0)
    assert animator.png().startswith(b"\x89PNG\r\n\x1a\n")


def test_animator_savefig_failure_leaves_nothing(tmp_path, monkeypatch):
    path = tmp_path / "plot.png"

    def broken_png(self):
        raise RuntimeError("rendering failed")

    monkeypatch.setattr(Animator, "png", broken_png)
    with pytest.raises(RuntimeError, match="rendering failed"):
        Animator().savefig(path)
    assert list(tmp_path.iterdir()) == []


def test_animator_savefig_into_a_missing_directory_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        Animator().savefig(tmp_path / "missing" / "plot.png")
    assert list(tmp_path.iterdir()) == []


def test_animator_figure_has_the_configured_axes():
    animator = Animator(
        xlabel="epoch",
        ylabel="perplexity",
        legend=["train"],
        xlim=[1, 5],
        ylim=[1, 30],
        yscale="log",
        nrows=1,
        ncols=2,
    )
    animator.add(1, 20.0)
    animator.add(5, 10.0)
    fig = animator.figure()
    axes = fig.axes
    assert len(axes) == 2
    ax = axes[0]
    assert ax.get_xlabel() == "epoch" and ax.get_ylabel() == "perplexity"
    assert ax.get_xlim() == (1.0, 5.0)
    assert ax.get_ylim() == pytest.approx((1.0, 30.0))
    assert ax.get_yscale() == "log"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["train"]
    (line,) = ax.get_lines()
    assert list(line.get_xdata()) == [1, 5] and list(line.get_ydata()) == [20.0, 10.0]


def test_animator_in_a_notebook_shows_then_updates_one_display(monkeypatch, capsys):
    shown = []

    class Handle:
        def update(self, image):
            shown.append(("update", image))

    def display(image, display_id=False):
        assert display_id is True
        shown.append(("display", image))
        return Handle()

    ipython = types.ModuleType("IPython")
    ipython.get_ipython = lambda: types.SimpleNamespace(kernel=object())
    ipython_display = types.ModuleType("IPython.display")
    ipython_display.Image = lambda data, format: ("image", format, data[:4])
    ipython_display.display = display
    ipython.display = ipython_display
    monkeypatch.setitem(sys.modules, "IPython", ipython)
    monkeypatch.setitem(sys.modules, "IPython.display", ipython_display)

    animator = Animator(legend=["train"])
    animator.add(1, 3.0)
    animator.add(2, 2.0)
    animator.add(3, 1.0)
    assert [kind for kind, _ in shown] == ["display", "update", "update"]
    assert all(image == ("image", "png", b"\x89PNG") for _, image in shown)
    assert animator.Y == [[3.0, 2.0, 1.0]]
    assert capsys.readouterr() == ("", "")


def test_importing_dl_progress_does_not_import_matplotlib():
    code = "import dl.progress, sys; assert 'matplotlib' not in sys.modules, 'matplotlib imported'"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


def test_animator_add_in_plain_python_process_prints_nothing():
    code = (
        "from dl.progress import Animator\n"
        "a = Animator(legend=['x'])\n"
        "for i in range(3): a.add(i, [i * 2])\n"
        "import sys; assert 'matplotlib' not in sys.modules\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and result.stderr == ""
