"""The chapter's exercise 4: does the LSTM need the tanh in H = O * tanh(C)?

Trains the seed's LSTM (256 hidden units, batches of 32 x 35, SGD with lr 1 and clipping 1,
The Time Machine's first 10,000 characters) twice, from the same weights on the same batches:
as the book, H = O * tanh(C), and without the tanh, H = O * C (``LMConfig(output_tanh=False)``,
``dl train --no-output-tanh``). Each is an ordinary ``dl train`` run under ``--out`` (``tanh/``,
``no-tanh/``, replacing runs there), trained in stages up to each probe epoch (resuming
exactly). At every probe the NumPy model walks the training text (32 rows, state carried, as
``dl eval`` does) and records the range of the hidden state H and the memory cell C over all
its steps and units.

Writes to ``--out``: ``perplexity.png`` (the perplexity curves of both, validation too with
``--val-fraction``), ``ranges.md`` and ``ranges.json``; prints the table.

    DL_DATA_DIR=... python examples/lstm_output_tanh.py [--backend torch] [--epochs 200]
"""

import argparse
import json
from pathlib import Path

import numpy as np

from dl import checkpoint, lm
from dl.cli.rundir import RunDir
from dl.cli.train import UsageError, load_data, resolve, train
from dl.data.batches import eval_batches
from dl.files import atomic_write
from dl.progress import Animator

VARIANTS = {"tanh": {}, "no-tanh": {"no_output_tanh": True}}  # run name -> settings
LABELS = {"tanh": "H = O tanh(C)", "no-tanh": "H = O C"}
PERCENTILE = 99.9


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="torch", help="torch, tensorflow or jax")
    parser.add_argument("--epochs", type=int, default=200, help="training epochs (book: 500)")
    parser.add_argument(
        "--probes",
        default="1,10,50,100,200,500",
        help="epochs at which to record the ranges (those up to --epochs; the last epoch always)",
    )
    parser.add_argument("--hidden", type=int, default=256, help="hidden units")
    parser.add_argument("--max-tokens", type=int, default=10000, help="characters of the book")
    parser.add_argument(
        "--val-fraction",
        type=float,
        default=0.0,
        help="tail of the text held out for validation perplexity (seed: 0)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights and batches")
    parser.add_argument("--out", type=Path, default=Path("runs/lstm_output_tanh"))
    return parser.parse_args()


def state_ranges(config: lm.LMConfig, params: dict, corpus: list[int]) -> dict:
    """Over every step of ``corpus`` walked in 32 rows (state carried): per H and C, the min,
    max, 99.9th percentile of |value| and the share of |value| > 1, over all units."""
    state, H, C = None, [], []
    for X, _ in eval_batches(corpus, 32, 1):  # X: (32, 1), one step at a time
        state = state or lm.zero_state(config, X.shape[0])
        _, state = lm.forward(lm.NUMPY_OPS, params, X, state, config)
        H.append(state[0])
        C.append(state[1])
    return {
        name: {
            "min": float(v.min()),
            "max": float(v.max()),
            "p999_abs": float(np.percentile(np.abs(v), PERCENTILE)),
            "share_abs_over_1": float(np.mean(np.abs(v) > 1)),
        }
        for name, v in (("H", np.stack(H)), ("C", np.stack(C)))
    }


def run_variant(name: str, settings: dict, run: Path, probes: list[int], corpus) -> list[dict]:
    """Train ``run`` up to each probe epoch in turn; the ranges at each (stops if it diverges)."""
    records = []
    for number, epoch in enumerate(probes):
        try:
            train(
                {**settings, "epochs": epoch}, run, resume=number > 0, force=number == 0, quiet=True
            )
        except UsageError as err:  # diverged: the checkpoint before it is kept
            print(f"{name}: {err}")
            break
        params, meta = checkpoint.load(run)
        config = lm.LMConfig.from_dict(meta["model"])
        records.append(
            {
                "model": name,
                "epoch": epoch,
                "perplexity": meta["train_perplexity"],
                "val_perplexity": meta["val_perplexity"],
                **state_ranges(config, params, corpus),
            }
        )
        print(describe(records[-1]), flush=True)
    return records


def describe(r: dict) -> str:
    val = f" (validation {r['val_perplexity']:.2f})" if r["val_perplexity"] else ""
    return (
        f"{r['model']:>7} epoch {r['epoch']:>4}: perplexity {r['perplexity']:6.2f}{val}; "
        + "; ".join(
            f"{k} in [{r[k]['min']:.3g}, {r[k]['max']:.3g}], {PERCENTILE}% |{k}| "
            f"<= {r[k]['p999_abs']:.3g}, {100 * r[k]['share_abs_over_1']:.1f}% "
            f"|{k}| > 1"
            for k in ("H", "C")
        )
    )


def markdown(records: list[dict], command: str) -> str:
    lines = [
        f"`{command}`",
        "",
        f"| model | epoch | train ppl | val ppl | H min | H max | H p{PERCENTILE} abs | "
        f"H abs>1 | C min | C max | C p{PERCENTILE} abs | C abs>1 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in records:
        cells = [
            f"{r[k]['min']:.3g} | {r[k]['max']:.3g} | {r[k]['p999_abs']:.3g} | "
            f"{100 * r[k]['share_abs_over_1']:.1f}%"
            for k in ("H", "C")
        ]
        val = f"{r['val_perplexity']:.2f}" if r["val_perplexity"] else "-"
        lines.append(
            f"| {LABELS[r['model']]} | {r['epoch']} | {r['perplexity']:.2f} | {val} | "
            f"{' | '.join(cells)} |"
        )
    return "\n".join(lines) + "\n"


def plot(out: Path, splits: list[str]) -> None:
    """The perplexity curves of both models per split, log scale, in ``out/perplexity.png``."""
    curves = {
        (name, split): {
            r["epoch"]: r[f"{split}_perplexity"] for r in RunDir(out / name).read_metrics()
        }
        for split in splits
        for name in VARIANTS
    }
    animator = Animator(
        xlabel="epoch",
        ylabel="perplexity",
        yscale="log",
        figsize=(5, 3.5),
        legend=[f"{LABELS[name]}, {split}" for name, split in curves],
    )
    for epoch in sorted(set().union(*curves.values())):
        animator.add(epoch, [curve.get(epoch) for curve in curves.values()])
    animator.savefig(out / "perplexity.png")


def main() -> None:
    args = parse_args()
    base = {
        "backend": args.backend,
        "hidden": args.hidden,
        "max_tokens": args.max_tokens,
        "val_fraction": args.val_fraction,
        "seed": args.seed,
    }
    corpus = load_data(resolve(base)).train
    probes = sorted(
        {p for p in map(int, args.probes.split(",")) if p < args.epochs} | {args.epochs}
    )
    records = []
    for name, extra in VARIANTS.items():
        records += run_variant(name, {**base, **extra}, args.out / name, probes, corpus)
    command = (
        f"python examples/lstm_output_tanh.py --backend {args.backend} --epochs "
        f"{args.epochs} --probes {args.probes} --hidden {args.hidden} --max-tokens "
        f"{args.max_tokens} --val-fraction {args.val_fraction} --seed {args.seed}"
    )
    atomic_write(args.out / "ranges.md", markdown(records, command))
    atomic_write(args.out / "ranges.json", json.dumps(records, indent=1))
    plot(args.out, ["train", "val"] if args.val_fraction else ["train"])
    print(f"wrote {args.out / 'ranges.md'}, ranges.json and perplexity.png")


if __name__ == "__main__":
    main()
