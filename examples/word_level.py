"""The chapter's exercise 2: an LSTM that generates words instead of characters.

What changes is the token, not the cell: the text is split into words, the vocabulary keeps
the words seen at least ``--min-freq`` times (the rarer ones all become ``<unk>``), the input
is a one-hot vector over that vocabulary (a row lookup: an embedding) and the output layer
scores every word, so ``W_xi..W_xc`` and ``W_hq`` grow from 28 to V rows/columns. Generated
words are joined by spaces.

It trains with ``dl train``'s own loop (``dl.cli.train.train``), holding out the last
``--val-fraction`` of the book for validation perplexity, then prints the vocabulary size,
the best validation perplexity and continuations (greedy, and sampled with a temperature)
of the checkpoint with the best validation loss, never choosing ``<unk>``. The run directory
is an ordinary ``dl train`` run: ``dl generate RUN --prefix "the time traveller"
--temperature 0.8`` continues it.

    DL_DATA_DIR=... python examples/word_level.py [--backend torch] [--epochs 40]
"""

import argparse
from pathlib import Path

import numpy as np

from dl import lm
from dl.cli.saved import open_model
from dl.cli.train import load_data, resolve, sample, train
from dl.train import greedy

PREFIX = "the time traveller"


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="torch", help="torch, tensorflow or jax")
    parser.add_argument("--epochs", type=int, default=40, help="training epochs")
    parser.add_argument(
        "--min-freq", type=int, default=2, help="words seen fewer times become <unk>"
    )
    parser.add_argument("--max-tokens", type=int, default=-1, help="words of the book, -1: all")
    parser.add_argument("--hidden", type=int, default=256, help="hidden units")
    parser.add_argument("--batch-size", type=int, default=32, help="sequences per batch")
    parser.add_argument("--num-steps", type=int, default=35, help="words per sequence")
    parser.add_argument(
        "--lr",
        type=float,
        default=20.0,
        help="learning rate of SGD (words need larger steps than characters)",
    )
    parser.add_argument(
        "--val-fraction", type=float, default=0.1, help="tail of the book held out for validation"
    )
    parser.add_argument("--num", type=int, default=20, help="words to generate")
    parser.add_argument("--temperature", type=float, default=0.8, help="of the sampled text")
    parser.add_argument("--seed", type=int, default=0, help="seed of weights, batches, samples")
    parser.add_argument("--out", type=Path, default=Path("runs/word_level"))
    return parser.parse_args()


def never_unk(choose, tokenizer):
    """``choose`` restricted to real words: ``<unk>``'s logit set to -inf."""

    def choose_word(logits):
        logits = np.array(logits, np.float64)
        logits[tokenizer.unk] = -np.inf
        return choose(logits)

    return choose_word


def unigram_perplexity(data) -> float:
    """Validation perplexity of word frequencies alone (add-one smoothed training counts)."""
    counts = np.bincount(data.train, minlength=len(data.tokenizer)) + 1
    log_probs = np.log(counts / counts.sum())
    return float(np.exp(-log_probs[data.val].mean()))


def main() -> None:
    args = parse_args()
    settings = {
        "backend": args.backend,
        "token": "book-word",
        "min_freq": args.min_freq,
        "max_tokens": args.max_tokens,
        "hidden": args.hidden,
        "batch_size": args.batch_size,
        "num_steps": args.num_steps,
        "lr": args.lr,
        "epochs": args.epochs,
        "val_fraction": args.val_fraction,
        "seed": args.seed,
    }
    print(f"training {args.epochs} epochs in {args.out} (replacing a run there)", flush=True)
    train(settings, args.out, force=True, quiet=True)
    model, tokenizer, meta, _ = open_model(args.out, "best", args.backend)
    print(
        f"vocabulary: {len(tokenizer):,} tokens, the {len(tokenizer) - 1:,} words seen at least "
        f"{args.min_freq} times and <unk>; "
        f"{meta['data']['train_tokens']:,} training and {meta['data']['val_tokens']:,} "
        f"validation words"
    )
    print(
        f"best validation perplexity {meta['val_perplexity']:.1f} at epoch {meta['epoch']} "
        f"(training perplexity {meta['train_perplexity']:.1f}); word frequencies alone "
        f"score {unigram_perplexity(load_data(resolve(settings))):.1f}"
    )
    print(f"greedy:  {sample(model, tokenizer, PREFIX, args.num, never_unk(greedy, tokenizer))}")
    choose = never_unk(lm.sampler(args.temperature, seed=args.seed), tokenizer)
    print(f"sampled: {sample(model, tokenizer, PREFIX, args.num, choose)}")


if __name__ == "__main__":
    main()
