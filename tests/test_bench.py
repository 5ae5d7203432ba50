"""`dl bench`: the files it writes, their columns and rows, and bad input (never timings)."""

import csv
import subprocess
import sys

import pytest

from dl import flops
from dl.cli import backends, bench, main
from dl.lm import LMConfig

TINY = [
    "--hidden",
    "8,16",
    "--batch-size",
    "2",
    "--num-steps",
    "3",
    "--batches",
    "2",
    "--repeats",
    "1",
    "--gen-tokens",
    "2",
]


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_bench_writes_table_csv_and_plot(tmp_path, capsys, time_machine_path):
    pytest.importorskip("torch")
    out = tmp_path / "bench"
    assert (
        main(["bench", "--cells", "rnn,gru,lstm", *TINY, "--backends", "torch", "--out", str(out)])
        == 0
    )
    rows = read_csv(out / "bench.csv")
    assert list(rows[0]) == list(bench.COLUMNS)
    assert [(r["cell"], r["hidden"]) for r in rows] == [
        (cell, hidden) for cell in ("rnn", "gru", "lstm") for hidden in ("8", "16")
    ]
    for r in rows:
        config = LMConfig(cell=r["cell"], vocab_size=28, num_hiddens=int(r["hidden"]))
        assert int(r["params"]) == config.num_params()
        assert int(r["train_flops_per_token"]) == flops.training_flops(config)
        assert int(r["inference_flops_per_token"]) == flops.inference_flops(config)
        assert r["backend"] == "torch" and r["framework"].startswith("torch ")
        assert r["impl"] == "scratch"
        assert float(r["train_tokens_per_sec"]) > 0 and float(r["generate_tokens_per_sec"]) > 0
        assert float(r["train_gflops_per_sec"]) == pytest.approx(
            float(r["train_tokens_per_sec"]) * int(r["train_flops_per_token"]) / 1e9
        )
    report = (out / "bench.md").read_text()
    table = [line for line in report.splitlines() if line.startswith("| torch ")]
    assert len(table) == 6 + 2  # one row per cell and size, one ratio row per size
    assert report.count("| backend | impl | device | cell | hidden | params |") == 1
    assert (
        "| backend | impl | hidden | LSTM/GRU train | LSTM/GRU generate | LSTM/GRU FLOPs |"
        in report
    )
    assert (out / "bench.png").read_bytes().startswith(b"\x89PNG")
    assert report in capsys.readouterr().out


@pytest.mark.slow
def test_concise_rows_beside_scratch_and_cells_without_a_layer_skipped(tmp_path, capfd):
    pytest.importorskip("torch")
    assert (
        main(
            [
                "bench",
                "--impl",
                "scratch,concise",
                "--cells",
                "gru,lstm",
                *TINY,
                "--data",
                "random",
                "--backends",
                "torch",
                "--device",
                "cpu",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    rows = read_csv(tmp_path / "bench.csv")
    assert [(r["impl"], r["cell"], r["hidden"]) for r in rows] == [
        ("scratch", "gru", "8"),
        ("scratch", "gru", "16"),
        ("scratch", "lstm", "8"),
        ("scratch", "lstm", "16"),
        ("concise", "lstm", "8"),
        ("concise", "lstm", "16"),
    ]
    out = capfd.readouterr().out  # the worker process's lines and the report
    assert (
        out.count(
            "torch concise gru: skipped, torch's own GRU layer computes another cell "
            "than the book's"
        )
        == 1
    )
    assert "| torch " in out and "| concise | cpu | lstm | 16 |" in out


@pytest.mark.slow
def test_each_backend_runs_in_its_own_process(tmp_path):
    names = [name for name in ("torch", "jax") if name in backends.installed()]
    if len(names) < 2:
        pytest.skip("needs torch and jax installed")
    code = (
        "import sys; from dl.cli import main; "
        f"status = main(['bench', '--cells', 'lstm', *{TINY!r}, '--data', 'random', "
        f"'--backends', 'torch,jax', '--out', {str(tmp_path)!r}]); "
        "print(status, [m for m in ('torch', 'tensorflow', 'jax') if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.splitlines()[-1] == "0 []", done.stderr[-2000:]
    rows = read_csv(tmp_path / "bench.csv")
    assert [r["backend"] for r in rows] == ["torch", "torch", "jax", "jax"]


def test_cost_ratios_are_time_per_token_of_lstm_over_the_other_cell():
    def row(cell, train, generate, impl="scratch"):
        config = LMConfig(cell=cell, num_hiddens=64)
        return {
            "backend": "torch",
            "impl": impl,
            "hidden": 64,
            "cell": cell,
            "train_tokens_per_sec": train,
            "generate_tokens_per_sec": generate,
            "train_flops_per_token": flops.training_flops(config),
        }

    rows = [row("rnn", 4000, 900), row("gru", 1500, 600), row("lstm", 1000, 300)]
    (ratio,) = bench.cost_ratios(rows)
    assert ratio["gru"][:2] == (1.5, 2.0) and ratio["rnn"][:2] == (4.0, 3.0)
    assert (ratio["backend"], ratio["impl"]) == ("torch", "scratch")
    concise = [row("rnn", 6000, 900, "concise"), row("lstm", 2000, 300, "concise")]
    ratios = bench.cost_ratios(rows + concise)  # an implementation's ratios use its own rows
    assert [(r["impl"], r["rnn"][0]) for r in ratios] == [("scratch", 4.0), ("concise", 3.0)]
    assert "gru" not in ratios[1]
    assert (
        ratio["gru"][2]
        == flops.training_flops(LMConfig(num_hiddens=64)) / rows[1]["train_flops_per_token"]
    )
    assert bench.cost_ratios(rows[:2]) == []  # no LSTM, no ratio


@pytest.mark.parametrize(
    "args, message",
    [
        (["--cells", "rnn,tcn"], "argument --cells: 'tcn' is not one of rnn, gru, lstm"),
        (["--impl", "keras"], "argument --impl: 'keras' is not one of scratch, concise"),
        (["--hidden", "64,0"], "argument --hidden: 0 must be at least 1"),
        (["--batch-size", "-2"], "argument --batch-size: -2 must be at least 1"),
        (["--gen-tokens", "many"], "argument --gen-tokens: 'many' is not a whole number"),
    ],
)
def test_bad_sizes_and_cells_exit_2(args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", *args])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_nothing_to_measure_exits_2_before_any_worker_starts(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(backends, "installed", lambda: ["torch"])
    monkeypatch.setattr(bench, "measure_in_subprocess", lambda *args: pytest.fail("measured"))
    assert (
        main(
            [
                "bench",
                "--impl",
                "concise",
                "--cells",
                "gru",
                "--backends",
                "torch",
                "--out",
                str(tmp_path / "b"),
            ]
        )
        == 2
    )
    assert (
        "nothing to measure: the own layers of torch compute none of --cells gru in the "
        "book's form; add --impl scratch"
    ) in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_without_matplotlib_no_plot_is_claimed_and_an_old_one_is_removed(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.setattr(backends, "installed", lambda: ["torch"])
    monkeypatch.setattr(
        bench,
        "measure_in_subprocess",
        lambda name, settings: [
            dict(
                backend="torch",
                impl="scratch",
                framework="torch 2",
                device="cpu",
                cell="rnn",
                hidden=8,
                vocab_size=28,
                train_tokens_per_sec=100.0,
                generate_tokens_per_sec=10.0,
            )
        ],
    )
    real_find_spec = bench.importlib.util.find_spec
    monkeypatch.setattr(
        bench.importlib.util,
        "find_spec",
        lambda name: None if name == "matplotlib" else real_find_spec(name),
    )
    (tmp_path / "bench.png").write_bytes(b"an earlier run's plot")
    assert (
        main(
            [
                "bench",
                "--cells",
                "rnn",
                "--hidden",
                "8",
                "--backends",
                "torch",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    assert "bench.csv (no bench.png: matplotlib is not installed)" in capsys.readouterr().out
    assert not (tmp_path / "bench.png").exists() and (tmp_path / "bench.csv").exists()


def test_out_that_is_a_file_exits_2(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    assert (
        main(["bench", "--backends", backends.installed()[0], "--out", str(tmp_path / "file")]) == 2
    )
    assert "is a file; give a directory for the reports" in capsys.readouterr().err


def test_unknown_or_missing_backend_exits_2(tmp_path, capsys, monkeypatch):
    assert main(["bench", "--backends", "mxnet", "--out", str(tmp_path)]) == 2
    assert "backend 'mxnet' is not one of torch, tensorflow, jax" in capsys.readouterr().err
    monkeypatch.setattr(backends, "installed", lambda: ["torch"])
    assert main(["bench", "--backends", "torch,jax", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "backend 'jax' is not installed here (installed: torch)" in err
    assert not list(tmp_path.iterdir())  # nothing measured, nothing written


@pytest.mark.slow
def test_a_worker_refusing_its_input_exits_2_with_its_message(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    assert (
        main(
            [
                "bench",
                "--cells",
                "rnn",
                *TINY,
                "--data",
                "random",
                "--backends",
                "torch",
                "--device",
                "cuda",
                "--out",
                str(tmp_path / "b"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "dl: error: torch: device 'cuda': PyTorch sees 0 GPU(s) here" in err
    assert not (tmp_path / "b" / "bench.md").exists()
