"""`dl train` on 1 and on N processes (torchrun, DDP over gloo on CPUs, NCCL on GPUs; or
``--backend jax``: jax.distributed over gloo on CPUs), side by side: training tokens/s of the
global batch and the scaling efficiency.

The same command runs once as one process and once under ``torchrun --standalone
--nproc-per-node N``; each process trains on ``batch / N`` rows of every batch, so both runs
take the same updates. The speed is the median over the epochs after the first (warm-up) of
``tokens_per_sec`` in the run's ``metrics.jsonl`` (tokens of the global batch per second of
updates, evaluation excluded). Efficiency: N-process speed / (N x one-process speed).

Usage: ``python benchmarks/distributed_scaling.py [--backend torch|jax] [--processes 2]
[--device cpu|gpu] [--hidden 256] [--batch-size 64] [--epochs 4] [--text FILE]``; on a GPU
machine ``--device gpu`` runs one process per GPU (torch). On a machine with fewer cores
than processes x threads the processes share cores and the gain is small.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from dl.cli.options import positive_int


def speed(run: Path) -> float:
    """Median tokens/s of the epochs after the first."""
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return statistics.median(r["tokens_per_sec"] for r in records[1:] or records)


def train(launcher: list, options: list, out: Path, env: dict) -> float:
    command = [*launcher, "-m", "dl", "train", *options, "--out", str(out)]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return speed(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("torch", "jax"), default="torch")
    parser.add_argument("--processes", type=positive_int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--hidden", type=positive_int, default=256)
    parser.add_argument("--batch-size", type=positive_int, default=64)
    parser.add_argument("--epochs", type=positive_int, default=4)
    parser.add_argument("--max-tokens", type=int, default=20000)
    parser.add_argument("--text", default=None, help="default: The Time Machine")
    parser.add_argument("--threads", type=positive_int, default=1, help="per process")
    args = parser.parse_args()
    options = [
        *("--backend", args.backend, "--device", args.device, "--hidden", str(args.hidden)),
        *("--batch-size", str(args.batch_size), "--epochs", str(args.epochs)),
        *("--max-tokens", str(args.max_tokens), "--print-every", "1000"),
        *("--val-fraction", "0", "--test-fraction", "0"),
        *(("--text", args.text) if args.text else ()),
    ]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    python = [sys.executable]
    torchrun = [python[0], "-m", "torch.distributed.run", "--standalone"]
    with tempfile.TemporaryDirectory() as tmp:
        one = train(python, options, Path(tmp) / "one", env)
        many = train(
            [*torchrun, f"--nproc-per-node={args.processes}"], options, Path(tmp) / "many", env
        )
    n = args.processes
    print(
        f"dl train --backend {args.backend} --hidden {args.hidden} --batch-size "
        f"{args.batch_size} (global) on "
        f"{args.device}, {args.threads} thread(s) per process, {os.cpu_count()} cores here\n"
    )
    print("| processes | tokens/s | speed-up | scaling efficiency |")
    print("| ---: | ---: | ---: | ---: |")
    print(f"| 1 | {one:,.0f} | 1.00x | 100% |")
    print(f"| {n} | {many:,.0f} | {many / one:.2f}x | {many / (n * one):.0%} |")


if __name__ == "__main__":
    main()
