"""The training options, declared once for ``dl train`` (one value each) and ``dl sweep``
(comma-separated lists), with parsers whose errors name the option and the accepted range."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from typing import Any

from dl.cli.backends import IMPLS, PREFERENCE
from dl.data.tokenizers import KINDS as TOKENS
from dl.errors import InputError
from dl.lm import INITS
from dl.optim import DECAYS
from dl.optim import NAMES as OPTIMIZERS


class UsageError(InputError):
    """Something the user asked for cannot be done; the message says what to do (exit 2)."""


def _int(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"{value} must be at least {minimum}")
    return value


def positive_int(text: str) -> int:
    return _int(text, 1)


def count(text: str) -> int:
    """A whole number >= 0."""
    return _int(text, 0)


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def positive_float(text: str) -> float:
    value = _float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value} must be greater than 0")
    return value


def count_float(text: str) -> float:
    """A number >= 0."""
    value = _float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} must be at least 0")
    return value


def fraction(text: str) -> float:
    """A number in [0, 1)."""
    value = _float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 0 and below 1")
    return value


_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(text: str) -> float:
    """Seconds, from ``90``, ``90s``, ``10m``, ``1.5h`` or ``2d``."""
    number, unit = (text[:-1], text[-1]) if text[-1:] in _SECONDS else (text, "s")
    try:
        seconds = float(number) * _SECONDS[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration; give seconds or a number with s, m, h or d "
            "(e.g. 90s, 10m, 2h)"
        ) from None
    if not 0 <= seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite duration of at least 0")
    return seconds


def choice(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in choices:
            raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(choices)}")
        return text

    parse.__name__ = "choice"
    return parse


def list_of(parse: Callable[[str], Any]) -> Callable[[str], list]:
    """``'a,b,c'`` -> ``[parse(a), parse(b), parse(c)]``."""

    def parse_list(text: str) -> list:
        items = [item.strip() for item in text.split(",")]
        if not all(items):
            raise argparse.ArgumentTypeError(
                f"{text!r} has an empty item; separate values with commas, e.g. 64,128"
            )
        return [parse(item) for item in items]

    parse_list.__name__ = parse.__name__
    return parse_list


@dataclasses.dataclass(frozen=True)
class Option:
    flag: str
    parse: Callable[[str], Any]
    default: Any
    help: str
    model: bool = False  # part of the model's definition (fixed once a run has started)

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


# the defaults reproduce the seed: the book's LSTM on The Time Machine, 500 epochs
TRAIN_OPTIONS = (
    Option(
        "--backend",
        choice(*PREFERENCE),
        None,
        "tensorflow, torch or jax (default: the fastest installed for the model)",
    ),
    Option(
        "--text",
        str,
        None,
        "a UTF-8 text file to train on (default: The Time Machine); with --text the "
        "defaults marked 'with --text' apply",
    ),
    Option(
        "--token",
        choice(*TOKENS),
        "book-char",
        "char: every character as it is; byte: UTF-8 bytes (256 ids, any file); word: words "
        "and punctuation marks, line breaks as <eos>; whitespace: runs between whitespace, "
        "line breaks as <eos> (pytorch/examples' word_language_model); book-char, book-word: "
        "the book's cleaning (letters only, lower case)",
        model=True,
    ),
    Option("--min-freq", count, 0, "leave out tokens seen fewer times (as <unk>)", model=True),
    Option(
        "--max-tokens",
        int,
        None,
        "use the first N tokens, -1 for all (default: the book's 10000 for The Time "
        "Machine, all of any other text)",
        model=True,
    ),
    Option("--cell", choice("rnn", "gru", "lstm"), "lstm", "recurrent cell", model=True),
    Option(
        "--impl",
        choice(*IMPLS),
        None,
        "concise: the framework's own recurrent layers; scratch: the book's cells written "
        "once for every framework; both save the same parameters (default: the fastest "
        "installed backend and implementation that compute the model)",
    ),
    Option("--hidden", positive_int, 256, "hidden units per layer", model=True),
    Option("--layers", positive_int, 1, "stacked recurrent layers", model=True),
    Option("--dropout", fraction, 0.0, "dropout between layers while training", model=True),
    Option(
        "--no-output-tanh",
        None,
        False,
        "LSTM with H = O * C (the chapter's exercise 4)",
        model=True,
    ),
    Option("--batch-size", positive_int, 32, "sequences per batch", model=True),
    Option("--num-steps", positive_int, 35, "time steps per sequence", model=True),
    Option(
        "--random-iter",
        None,
        False,
        "random instead of sequential partitioning (state not carried)",
        model=True,
    ),
    Option(
        "--optimizer",
        choice(*OPTIMIZERS),
        "sgd",
        "sgd (the book's), adam, adamw or rmsprop (char-rnn's), from the framework's own library",
        model=True,
    ),
    Option("--lr", positive_float, 1.0, "learning rate", model=True),
    Option(
        "--weight-decay",
        count_float,
        0.0,
        "weight decay: L2 with sgd, decoupled with adamw",
        model=True,
    ),
    Option("--clip", positive_float, 1.0, "global gradient norm clipping threshold", model=True),
    Option("--epochs", positive_int, 500, "training epochs (in all, counting resumed ones)"),
    # long runs: schedules, plateau, early stopping, evaluation cadence, a time budget
    Option(
        "--schedule",
        choice(*DECAYS),
        "constant",
        "learning-rate decay over the run's updates: constant, or cosine to --min-lr-fraction",
        model=True,
    ),
    Option("--warmup", count, 0, "updates of linear learning-rate warm-up", model=True),
    Option(
        "--min-lr-fraction",
        count_float,
        0.0,
        "where the cosine ends, as a fraction of --lr (at most 1)",
        model=True,
    ),
    Option(
        "--plateau-factor",
        fraction,
        0.0,
        "multiply the rate by F when the validation loss stops improving (0: off; the "
        "word-language-model example's 0.25)",
        model=True,
    ),
    Option(
        "--plateau-patience",
        count,
        0,
        "evaluations without improvement tolerated before a plateau cut",
        model=True,
    ),
    Option(
        "--patience",
        count,
        0,
        "stop after N evaluations without a better validation loss (0: never)",
    ),
    Option(
        "--eval-every",
        positive_int,
        None,
        "updates between validations, also in the middle of an epoch (default: each epoch)",
    ),
    Option(
        "--max-time",
        duration,
        None,
        "end training cleanly after this long (90s, 10m, 2h; this invocation's time): "
        "save, evaluate, summarise",
    ),
    Option(
        "--val-fraction",
        fraction,
        0.0,
        "hold out this tail of the text for validation (in time order: training, then "
        "validation, then test)",
        model=True,
    ),
    # a user's text: held-out parts, the vocabulary's size and the text model's layers
    Option(
        "--test-fraction",
        fraction,
        0.0,
        "hold out this last tail of the text for the test figures, computed once at the end "
        "on the best checkpoint",
        model=True,
    ),
    Option(
        "--val-text",
        str,
        None,
        "validation text in a file of its own (instead of --val-fraction); the vocabulary "
        "is fitted over every text given",
    ),
    Option("--test-text", str, None, "test text in a file of its own (instead of --test-fraction)"),
    Option(
        "--init",
        choice(*INITS),
        "book",
        "initial weights: book (N(0, 0.01)) or uniform (PyTorch's recurrent layers' "
        "U(+-1/sqrt(H)), U(+-0.1) for the embedding and output layer)",
        model=True,
    ),
    Option(
        "--fit-vocab",
        choice("all", "text"),
        "all",
        "fit the vocabulary over every text given (all, as nanoGPT and word_language_model "
        "do) or over --text alone (text: tokens seen only in --val-text or --test-text become "
        "<unk>)",
        model=True,
    ),
    Option(
        "--max-vocab",
        positive_int,
        None,
        "keep at most the N most frequent tokens, <unk> and <eos> counted (char, word, "
        "whitespace); the others become <unk>",
        model=True,
    ),
    Option(
        "--embedding",
        count,
        0,
        "embedding size E of the input tokens; 0: the book's one-hot inputs",
        model=True,
    ),
    Option(
        "--tie-weights",
        None,
        False,
        "the output layer is the embedding table transposed (needs --embedding equal to --hidden)",
        model=True,
    ),
    Option("--embed-dropout", fraction, 0.0, "dropout on the embeddings", model=True),
    Option("--output-dropout", fraction, 0.0, "dropout on the last layer's outputs", model=True),
    Option("--seed", count, 0, "seed of the weights, batch offsets and dropout", model=True),
    Option("--device", str, None, "cpu, gpu, cuda:N (default: a GPU if there is one)"),
    Option(
        "--devices",
        positive_int,
        1,
        "train data-parallel on N local devices of --device's kind, from it on (jax, "
        "tensorflow): each batch split by rows, the weights replicated; torch: use torchrun",
    ),
    Option("--precision", choice("fp32", "bf16"), "fp32", "fp32, or bf16 (torch only)"),
)
# option dest -> its default when --text is given and the option is not: a character model for
# a few-megabyte text on a CPU, chosen by measurement (benchmarks/text_quality.py; without
# --text, `dl train` keeps the seed's defaults)
TEXT_DEFAULTS = {
    "token": "char",
    "embedding": 64,
    "hidden": 256,
    "layers": 1,
    "optimizer": "adam",
    "lr": 0.003,
    "schedule": "cosine",
    "min_lr_fraction": 0.1,
    "batch_size": 32,
    "num_steps": 64,
    "clip": 1.0,
    "epochs": 40,
    "val_fraction": 0.1,
    "test_fraction": 0.05,
}
SWEEPABLE = tuple(
    o
    for o in TRAIN_OPTIONS
    if o.parse is not None
    and o.flag
    not in (
        "--backend",
        "--text",
        "--val-text",
        "--test-text",
        "--device",
        "--devices",
        "--precision",
        "--max-time",
    )
)


def add_train_options(
    parser: argparse.ArgumentParser, lists: bool = False, defaults: dict[str, Any] | None = None
) -> None:
    """Add the training options; with ``lists``, sweepable ones take comma-separated values.
    ``defaults``: option dest -> the default a command uses instead of ``dl train``'s."""
    defaults = defaults or {}
    group = parser.add_argument_group("training options")
    for option in TRAIN_OPTIONS:
        if option.parse is None:  # a switch
            group.add_argument(option.flag, action="store_true", default=None, help=option.help)
            continue
        parse = list_of(option.parse) if lists and option in SWEEPABLE else option.parse
        metavar = option.dest.upper() + ("[,...]" if lists and option in SWEEPABLE else "")
        default = defaults.get(option.dest, option.default)
        text = TEXT_DEFAULTS.get(option.dest)
        shown = f"{default}; {text} with --text" if text not in (None, default) else default
        group.add_argument(
            option.flag,
            type=parse,
            default=None,
            metavar=metavar,
            help=f"{option.help} (default: {shown})" if default is not None else option.help,
        )


def given(args: argparse.Namespace) -> dict[str, Any]:
    """The training options the user gave (the others are None)."""
    return {
        o.dest: getattr(args, o.dest)
        for o in TRAIN_OPTIONS
        if getattr(args, o.dest, None) is not None
    }


def with_defaults(values: dict[str, Any]) -> dict[str, Any]:
    """Every training option: ``values`` where given, else the default (with a ``text``,
    :data:`TEXT_DEFAULTS`'s)."""
    defaults = TEXT_DEFAULTS if values.get("text") is not None else {}
    return {o.dest: values.get(o.dest, defaults.get(o.dest, o.default)) for o in TRAIN_OPTIONS}
