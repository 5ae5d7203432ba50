"""Held-out loss of ``dl train`` on real text, at no more wall time than its peers, on this machine.

- Characters: the whole Time Machine with every character kept (178,979 characters, 70
  distinct), the first 90% for training and the last 10% held out, as nanoGPT's
  ``shakespeare_char`` preparation splits a text. The peer: nanoGPT's documented CPU quick
  start (4-layer transformer, 4 heads, 128 wide, context 64, batch 12, 2,000 iterations, AdamW
  with cosine decay): validation loss 1.74 nats per character in 90 s from start to end
  (measured on this 2-core machine for issue 14).
- Words: the same text split by lines 80/10/10, tokens between whitespace with an end-of-line
  token, as pytorch/examples' ``word_language_model`` reads its ``train/valid/test.txt``, the
  vocabulary of the training part (6,071 words; ``--fit-vocab text``). The peer, with its
  defaults (2-layer LSTM of 200, dropout 0.2, SGD at 20 annealed by 4, clip 0.25,
  40 epochs, batch 20, 35 steps): test perplexity 468 in 120 s.

Every row is one ``dl train`` command run as a subprocess, timed from its start to its exit
(start-up, tokenization, training, evaluation and saving included), with ``--max-time`` set so
that the whole stays within the peer's wall time. The rows go from the book's settings on the
raw text to ``dl``'s defaults, one setting at a time, so the table shows what each
contributes. The machine should be otherwise idle.

Usage: ``python benchmarks/text_quality.py [--level char,word] [--backend torch]
[--text PATH]``. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PEERS = {
    "char": ("nanoGPT CPU quick start", 90.0, "validation loss 1.74 nats/char"),
    "word": ("word_language_model defaults", 120.0, "test perplexity 468"),
}
START_UP = 15.0  # seconds a run spends outside --max-time: imports, data, evaluation, saving

# (what the row changes, its options); options not given are the text profile's
# (dl.cli.options.TEXT_DEFAULTS), so the last character row is `dl train --text FILE` as it is
CHAR_ROWS = (
    (
        "the book's model and training: one-hot inputs, SGD at lr 1, batches 32 x 35",
        "--embedding 0 --optimizer sgd --lr 1 --schedule constant --num-steps 35",
    ),
    ("Adam at lr 0.003 instead of SGD", "--embedding 0 --schedule constant --num-steps 35"),
    ("an embedding of 64, sequences of 64", "--schedule constant"),
    ("a cosine decay to 0.1 lr: dl's defaults for --text", ""),
)
PEER_WORDS = (
    "--embedding 200 --hidden 200 --layers 2 --dropout 0.2 --embed-dropout 0.2 "
    "--output-dropout 0.2 --optimizer sgd --lr 20 --clip 0.25 --batch-size 20 --num-steps 35 "
    "--schedule constant --plateau-factor 0.25"
)
WORD_ROWS = (
    ("the peer's model and training, the book's N(0, 0.01) weights", PEER_WORDS),
    ("the same, with the peer's uniform initial weights", f"{PEER_WORDS} --init uniform"),
    (
        "tied 256-wide embedding and output, dropout 0.5, early stop after 4",
        "--embedding 256 --hidden 256 --tie-weights --layers 2 --dropout 0.5 "
        "--embed-dropout 0.5 --output-dropout 0.5 --optimizer sgd --lr 20 --clip 0.25 "
        "--batch-size 20 --num-steps 35 --schedule constant --plateau-factor 0.25 "
        "--patience 4 --init uniform",
    ),
)


def run(command: list[str], budget: float) -> tuple[float, str]:
    """Run ``command``; ``(wall seconds, its output)``; raise if it fails or overruns."""
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=budget * 3)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return wall, done.stdout


def last_record(run_dir: Path) -> dict:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return json.loads(lines[-1])


def split_lines(text: Path, directory: Path) -> list[Path]:
    """``train/valid/test.txt`` of ``text``'s lines 80/10/10, as the word model's data dir."""
    lines = text.read_text(encoding="utf-8").splitlines(keepends=True)
    cuts = (0, int(len(lines) * 0.8), int(len(lines) * 0.9), len(lines))
    paths = []
    for name, start, end in zip(("train", "valid", "test"), cuts, cuts[1:]):
        path = directory / f"{name}.txt"
        path.write_text("".join(lines[start:end]), encoding="utf-8")
        paths.append(path)
    return paths


def level_rows(level: str, text: Path, backend: str, work: Path) -> list[str]:
    peer, wall_budget, peer_figure = PEERS[level]
    max_time = wall_budget - START_UP
    if level == "char":
        data = ["--text", str(text), "--val-fraction", "0.1", "--test-fraction", "0"]
        rows = CHAR_ROWS
    else:
        train, valid, test = split_lines(text, work)
        data = ["--text", str(train), "--val-text", str(valid), "--test-text", str(test)]
        data += ["--token", "whitespace", "--fit-vocab", "text", "--test-fraction", "0"]
        rows = WORD_ROWS
    table = []
    for number, (label, options) in enumerate(rows):
        out = work / f"{level}{number}"
        command = [sys.executable, "-m", "dl", "train", *data, *options.split()]
        command += ["--backend", backend, "--max-time", f"{max_time:.0f}", "--out", str(out)]
        command += ["--print-every", "1000"] + (["--epochs", "40"] if level == "word" else [])
        wall, output = run(command, wall_budget)
        record, meta = last_record(out), json.loads((out / "model.json").read_text())
        figure = held_out(level, meta)
        sample = output.strip().splitlines()[-2][:60].replace("|", "/")
        shown = " ".join(options.split()) or "(none)"
        table.append(
            f"| {label} | `{shown}` | {wall:.0f} | {record['tokens_per_sec']:,.0f} | "
            f"{figure} | {sample!r} |"
        )
    header = f"\n**{level} level** (peer: {peer}, {peer_figure} in {wall_budget:.0f} s)\n"
    columns = (
        "| setting | command | wall s | tokens/s | held-out | sample |\n|---|---|---|---|---|---|"
    )
    return [header, columns, *table]


def held_out(level: str, meta: dict) -> str:
    """The run's figure to compare: the best validation loss (characters, as nanoGPT reports
    it), the test perplexity on the best checkpoint (words, as word_language_model does)."""
    best = meta["best_val_loss"]
    if level == "char":
        return f"val {best:.3f} nats/char ({best / math.log(2):.3f} bits/char)"
    return f"test ppl {meta['test']['test_perplexity']:.0f} (val {math.exp(best):.0f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--level", default="char,word")
    parser.add_argument("--backend", default="torch")
    parser.add_argument(
        "--text",
        type=Path,
        default=Path(os.environ.get("DL_DATA_DIR", "data")) / "timemachine.txt",
        help="The Time Machine (default: $DL_DATA_DIR/timemachine.txt)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        for level in args.level.split(","):
            print("\n".join(level_rows(level, args.text, args.backend, Path(work))), flush=True)


if __name__ == "__main__":
    main()
