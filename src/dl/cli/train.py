"""``dl train``: the chapter's language model on any text, with checkpoints and exact resume.

With no options it reproduces the seed: an LSTM with 256 hidden units on The Time Machine
(characters, the book's first 10,000), batches of 32 x 35, SGD with lr 1 and clipping 1,
500 epochs, printing what the book prints.

Every epoch ``e`` draws its batch offsets and dropout masks from a seed derived from
``(--seed, e)`` alone, so a run resumed from the checkpoint of epoch ``k`` continues exactly as
the uninterrupted run would have.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import math
import random
import sys
import time
from pathlib import Path

import numpy as np

from dl import __version__, checkpoint, lm, optim
from dl import train as core
from dl.cli import backends, distributed, longrun, signals
from dl.cli.options import (
    TRAIN_OPTIONS,
    UsageError,
    add_train_options,
    given,
    positive_float,
    positive_int,
    with_defaults,
)
from dl.cli.rundir import RunDir, locked, note
from dl.cli.saved import check_finite, upgrade
from dl.data import corpus, tokenizers
from dl.data.batches import SeqDataLoader
from dl.errors import InputError
from dl.files import WriteError
from dl.metrics import text_figures
from dl.optim import OptimizerConfig
from dl.validate import parse_device

BOOK_PREFIXES = ("time traveller", "traveller")


class TrainingDiverged(UsageError):
    """The loss turned NaN or infinite; the message says what was kept and what to change."""


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a language model (defaults: the book's LSTM on The Time Machine)",
        description="Train the chapter's language model on any text, with checkpoints and "
        "exact resume. With no options: the seed's LSTM on The Time Machine.",
    )
    add_train_options(parser)
    run = parser.add_argument_group("run")
    run.add_argument(
        "--out", type=Path, default=None, help="run directory (default: runs/<cell>-<date>-<time>)"
    )
    run.add_argument("--resume", action="store_true", help="continue the run in --out")
    run.add_argument("--force", action="store_true", help="overwrite the run in --out")
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="prepare data and model, train one batch, write no run (the text's ids are "
        "cached as in any run)",
    )
    run.add_argument(
        "--prefix",
        action="append",
        default=None,
        help="text to continue in the printed samples (repeatable; default: the "
        "book's 'time traveller' and 'traveller' on The Time Machine)",
    )
    run.add_argument(
        "--print-every", type=positive_int, default=10, help="epochs between samples (default: 10)"
    )
    run.add_argument(
        "--save-every",
        type=positive_int,
        default=10,
        help="epochs between checkpoints (default: 10)",
    )
    run.add_argument(
        "--save-every-steps",
        type=positive_int,
        default=None,
        help="also save every N updates, in the middle of an epoch (a resume continues there)",
    )
    run.add_argument(
        "--save-minutes",
        type=positive_float,
        default=None,
        help="also save every M minutes of training, in the middle of an epoch",
    )
    run.add_argument(
        "--dist-timeout",
        type=positive_float,
        default=300.0,
        help="with several processes (torchrun) or --devices: seconds to wait for the others "
        "at the rendezvous and in any collective before stopping (default: 300)",
    )
    parser.set_defaults(command=main)


def main(args: argparse.Namespace) -> int:
    if args.resume and args.out is None:
        raise UsageError("--resume needs --out RUN, the run directory to continue")
    if args.resume and args.force:
        raise UsageError(
            "--resume continues the run in --out and --force overwrites it; give one of them"
        )
    out = args.out or Path("runs") / time.strftime(f"{args.cell or 'lstm'}-%Y%m%d-%H%M%S")
    return train(
        given(args),
        out,
        resume=args.resume,
        force=args.force,
        dry_run=args.dry_run,
        prefixes=args.prefix,
        print_every=args.print_every,
        save_every=args.save_every,
        save_every_steps=args.save_every_steps,
        save_minutes=args.save_minutes,
        dist_timeout=args.dist_timeout,
    )


@dataclasses.dataclass
class Data:
    """The token ids of a run (``(N,)`` int32 arrays, memory-mapped: training, validation and
    test parts in time order), its tokenizer and the texts they came from."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    tokenizer: tokenizers.Tokenizer
    texts: dict[str, corpus.TextFile]  # option dest (text, val_text, test_text) -> its file

    @property
    def source(self) -> str:
        return self.texts["text"].source

    @property
    def sha256(self) -> str:
        return self.texts["text"].sha256

    def first_words(self) -> str:
        """The first two words of the training text's first line (a default prefix)."""
        decoded = self.tokenizer.decode(self.train[:1000])
        line = next((line for line in decoded.splitlines() if line.strip()), decoded)
        return " ".join(line.split()[:2]) or line


RUN_TEXTS = ("text", "val_text", "test_text")  # the option dests naming a run's text files
HELD_OUT = (("val_text", "val_fraction", "validation"), ("test_text", "test_fraction", "test"))


def load_data(settings: dict, tokenizer: tokenizers.Tokenizer | None = None) -> Data:
    """The run's texts as token ids under ``tokenizer`` (a resumed run's), else under one fitted
    over every text (or ``--text`` alone: ``--fit-vocab text``); split in time order; every
    part checked to hold a batch."""
    kind = settings["token"]
    texts = {
        dest: corpus.TextFile.open(settings.get(dest), binary=kind == "byte")
        for dest in RUN_TEXTS
        if dest == "text" or settings.get(dest)
    }
    try:
        tokenizer, ids = corpus.load(
            list(texts.values()),
            kind,
            settings["min_freq"],
            settings["max_vocab"],
            tokenizer,
            fit_on=1 if settings["fit_vocab"] == "text" else None,
        )
    except InputError as err:
        raise UsageError(str(err)) from None
    parts = dict(zip(texts, ids))
    source = texts["text"].source
    if not len(parts["text"]) and kind.startswith("book-"):
        raise UsageError(
            f"{source}: no letters left after cleaning (the book keeps letters "
            "only, lower-cased); give a text with words in it, or --token char"
        )
    _check_vocabulary(settings, tokenizer, texts["text"])
    main = parts["text"] if settings["max_tokens"] <= 0 else parts["text"][: settings["max_tokens"]]
    try:
        train, val, test = corpus.split(main, settings["val_fraction"], settings["test_fraction"])
    except InputError as err:
        raise UsageError(f"{source}: {err}") from None
    held = {"val_text": val, "test_text": test}
    for dest, _, name in HELD_OUT:
        if dest in parts:
            if len(parts[dest]) < 2:
                raise UsageError(
                    f"--{dest.replace('_', '-')} {texts[dest].source}: {len(parts[dest])} "
                    f"{tokenizer.unit}s, and {name} needs at least 2; give a longer text"
                )
            held[dest] = parts[dest]
    return Data(train, held["val_text"], held["test_text"], tokenizer, texts)


def _check_vocabulary(settings: dict, tokenizer, text: corpus.TextFile) -> None:
    """Refuse a vocabulary of reserved tokens only (``--min-freq`` above every count)."""
    if len(tokenizer) > tokenizer.reserved:
        return
    content = text.read()
    unlimited = tokenizers.fit(settings["token"], content)
    counts = np.bincount(unlimited.encode(content), minlength=len(unlimited))
    raise UsageError(
        f"--min-freq {settings['min_freq']}: no token of {text.source} occurs that "
        f"often (the most frequent, {counts[unlimited.reserved :].max(initial=0)} times), so "
        f"the vocabulary would be only {', '.join(tokenizer.idx_to_token)}; lower --min-freq"
    )


def resolve(settings: dict) -> dict:
    """Every option with its default filled in (with ``--text``, :data:`TEXT_DEFAULTS`'s),
    the token cap and backend made explicit."""
    settings_given = settings
    settings = with_defaults(settings)
    for dest, fraction_dest, _ in HELD_OUT:  # a part in its own file: no tail held out
        if settings[dest] and fraction_dest not in settings_given:
            settings[fraction_dest] = 0.0
    if settings["schedule"] != "cosine" and "min_lr_fraction" not in settings_given:
        settings["min_lr_fraction"] = 0.0  # the text profile's floor is its cosine's
    if settings["max_tokens"] is None:
        settings["max_tokens"] = 10000 if settings["text"] is None else -1
    if settings["max_tokens"] == 0 or settings["max_tokens"] < -1:
        raise UsageError(
            f"--max-tokens {settings['max_tokens']}: give a positive count, or -1 for all tokens"
        )
    parse_device(settings["device"])  # a malformed name fails before any work
    _check_text_options(settings, settings_given)
    if settings["no_output_tanh"] and settings["cell"] != "lstm":
        raise UsageError(
            f"--no-output-tanh applies to the LSTM only, not --cell {settings['cell']}"
        )
    try:
        optimizer_config(settings)
    except ValueError as err:
        raise UsageError(f"--optimizer {settings['optimizer']}: {err}") from None
    settings["backend"], settings["impl"] = backends.choose_model(
        settings["backend"], settings["impl"], settings["cell"], not settings["no_output_tanh"]
    )
    check_devices(settings)
    settings["random_iter"] = bool(settings["random_iter"])
    settings["no_output_tanh"] = bool(settings["no_output_tanh"])
    settings["tie_weights"] = bool(settings["tie_weights"])
    return settings


def _check_text_options(settings: dict, given_settings: dict) -> None:
    """Refuse options that contradict each other or would do nothing, naming them."""
    if settings["dropout"] and settings["layers"] == 1:
        raise UsageError(
            f"--dropout {settings['dropout']} acts between stacked layers, so with --layers 1 "
            "it would do nothing; give --layers 2 or more, use --embed-dropout or "
            "--output-dropout, or leave --dropout out"
        )
    if settings["embed_dropout"] and not settings["embedding"]:
        raise UsageError(
            f"--embed-dropout {settings['embed_dropout']} drops out embeddings, and the one-hot "
            "inputs of --embedding 0 have none; give --embedding E, or leave --embed-dropout out"
        )
    if settings["tie_weights"] and settings["embedding"] != settings["hidden"]:
        raise UsageError(
            f"--tie-weights shares the embedding table with the output layer, so --embedding "
            f"({settings['embedding']}) must equal --hidden ({settings['hidden']}); give "
            f"--embedding {settings['hidden']}, or leave --tie-weights out"
        )
    for dest, fraction_dest, _ in HELD_OUT:
        if settings[dest] and fraction_dest in given_settings and settings[fraction_dest]:
            raise UsageError(
                f"--{dest.replace('_', '-')} and --{fraction_dest.replace('_', '-')} both give "
                "the held-out part; give one of them"
            )
    if settings["token"] == "byte":
        for dest in ("max_vocab", "min_freq"):
            if settings[dest]:
                raise UsageError(
                    f"--{dest.replace('_', '-')} with --token byte: the 256 byte values are "
                    "all kept, none is unknown; leave it out"
                )


def check_devices(settings: dict) -> None:
    """Refuse a ``--devices`` the backend cannot split the batch across (the count of devices
    there are is checked where the model is built)."""
    devices, batch_size = settings.get("devices", 1), settings["batch_size"]
    if devices == 1:
        return
    if settings["backend"] == "torch":
        raise UsageError(
            f"--devices {devices}: the torch backend trains on one device per process; start "
            f"one process per device with `torchrun --nproc-per-node {devices} -m dl train ...`, "
            "or give --backend jax or tensorflow"
        )
    if batch_size % devices:
        raise UsageError(
            f"--devices {devices} does not divide --batch-size {batch_size}: each device "
            f"trains on an equal share of the rows; give a --batch-size that is a multiple of "
            f"{devices}"
        )


def model_config(settings: dict, vocab_size: int) -> lm.LMConfig:
    return lm.LMConfig(
        cell=settings["cell"],
        vocab_size=vocab_size,
        num_hiddens=settings["hidden"],
        num_layers=settings["layers"],
        dropout=settings["dropout"],
        output_tanh=not settings["no_output_tanh"],
        embedding=settings["embedding"],
        tie_weights=bool(settings["tie_weights"]),
        embed_dropout=settings["embed_dropout"],
        output_dropout=settings["output_dropout"],
    )


def optimizer_config(settings: dict) -> OptimizerConfig:
    """The run's optimizer (runs saved before ``--optimizer`` existed trained with SGD)."""
    return OptimizerConfig(
        settings.get("optimizer", "sgd"), settings["lr"], settings.get("weight_decay", 0.0)
    )


def describe(figures: dict, bits_per: str | None, part: str = "") -> str:
    """``perplexity 5.20 (loss 1.649 nats/token, 2.379 bits/char)`` from :func:`text_figures`'
    keys, each prefixed with ``part`` (``'val_'``, ``'test_'``)."""
    extra = f", {figures[f'{part}bits_per_{bits_per}']:.3f} bits/{bits_per}" if bits_per else ""
    return (
        f"perplexity {figures[f'{part}perplexity']:.2f} (loss "
        f"{figures[f'{part}loss']:.3f} nats/token{extra})"
    )


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of epoch ``epoch``'s batch offsets and dropout: a function of both only."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


def build_model(settings: dict, config: lm.LMConfig, params: dict, device: str | None = None):
    """The run's model; ``device``: this process's under torchrun, else ``--device``."""
    cls = backends.model_class(settings["backend"], settings["impl"])
    return cls(
        config,
        params,
        device=device or settings["device"],
        precision=settings["precision"],
        devices=settings.get("devices", 1),
    )


def check_prefixes(prefixes, tokenizer: tokenizers.Tokenizer, option: str = "--prefix") -> None:
    """Refuse a prefix with no token, or none the model knows (it would see only <unk>)."""
    for prefix in prefixes:
        ids = tokenizer.encode(prefix)
        if not len(ids) and not prefix.strip():
            raise UsageError(
                f"{option} {prefix!r} holds nothing to continue; give a few "
                f"{tokenizer.unit}s of the text"
            )
        if not len(ids) or (ids == tokenizer.unk).all():
            raise UsageError(
                f"{option} {prefix!r}: none of its {tokenizer.unit}s is in the model's "
                f"vocabulary of {len(tokenizer)} (it would see only <unk>); give a "
                "prefix written like the training text"
            )


def sample(
    model, tokenizer: tokenizers.Tokenizer, prefix: str, num: int = 50, choose=core.greedy
) -> str:
    """``prefix`` (as the run's tokenizer reads and writes it back) and ``num`` tokens more
    from ``model``."""
    ids = core.predict_ids(tokenizer.encode(prefix), num, model.step, model.begin_state(1), choose)
    return tokenizer.decode(ids)


def _resume_settings(
    run: RunDir, asked: dict, stem: str = "model"
) -> tuple[dict, dict, dict, dict, list]:
    """The stored run's ``(settings, params, optimizer state, meta, carried state)`` from
    checkpoint ``stem``; refuse changed model options and weights that are not finite."""
    params, optimizer_state, carried, meta = checkpoint.load_run(run.path, stem)
    check_finite(params, checkpoint.weights_path(run.path, stem), "continue")
    meta = upgrade(meta)
    stored = {**with_defaults({}), **meta["settings"]}  # options newer than the run: defaults
    changed = [
        f"--{name.replace('_', '-')} {asked[name]} (the run has {stored.get(name, o.default)})"
        for o in TRAIN_OPTIONS
        if o.model and (name := o.dest) in asked and asked[name] != stored.get(name, o.default)
    ]
    if changed:
        raise UsageError(
            f"--resume continues {run.path} with its own settings; these differ: "
            f"{'; '.join(changed)}. Start a new run for other settings"
        )
    settings = {**with_defaults({}), **stored}  # options newer than the run: defaults
    settings.update(
        {
            k: v
            for k, v in asked.items()
            if k in ("epochs", "backend", "device", "devices", "precision", "impl", *RUN_TEXTS)
            or k in ("patience", "eval_every")
        }
    )
    settings["max_time"] = asked.get("max_time")  # a budget is this invocation's
    backend = asked.get("backend") or (
        stored["backend"] if stored["backend"] in backends.installed() else None
    )
    impl = asked.get("impl") or (stored["impl"] if backend == stored["backend"] else None)
    settings["backend"], settings["impl"] = backends.choose_model(
        backend, impl, stored["cell"], not stored["no_output_tanh"]
    )
    parse_device(settings["device"])
    check_devices(settings)
    for dest in RUN_TEXTS:
        if dest not in asked:
            settings[dest] = stored_text(run.path, meta, dest, settings[dest])
    config = optimizer_config(settings)
    if not optimizer_state and config.slots:
        raise UsageError(
            f"--resume: {checkpoint.weights_path(run.path, stem)} holds no "
            f"{config.name} state, so the run cannot continue exactly; start a "
            "new run"
        )
    return settings, params, optimizer_state or optim.zero_state(config, {}), meta, carried


def stored_text(
    run: Path, meta: dict, dest: str, text: str | None, command: str = "--resume"
) -> str | None:
    """The ``--text`` (``dest``: or ``--val-text``, ``--test-text``) run ``run`` read: as it
    was given, else (a path relative to where the run started) its absolute path, with a
    note; refuse, saying where the path came from (``command``: who needs it)."""
    if text is None or Path(text).is_file():
        return text
    flag = f"--{dest.replace('_', '-')}"
    absolute = (meta["data"] if dest == "text" else meta["data"].get(dest) or {}).get("path")
    if absolute and Path(absolute).is_file():
        note(
            f"the run's {flag} {text} is not found from {Path.cwd()}; using {absolute}, "
            "where it was when the run started"
        )
        return absolute
    raise UsageError(
        f"{command}: {run} was trained on {flag} {text} (stored in the run), "
        f"which is not found from {Path.cwd()}; give {flag} PATH to the same text"
    )


def train(
    asked: dict,
    out: Path,
    resume: bool = False,
    force: bool = False,
    dry_run: bool = False,
    prefixes=None,
    print_every: int = 10,
    save_every: int = 10,
    quiet: bool = False,
    save_every_steps: int | None = None,
    save_minutes: float | None = None,
    dist_timeout: float = 300.0,
) -> int:
    """Run ``dl train``; returns the exit status (0 done, 130 / 143 interrupted). The run
    directory is locked (:func:`dl.cli.rundir.locked`) except for a dry run; every input is
    checked before anything in it changes. Under torchrun (:mod:`dl.cli.distributed`) rank 0
    alone locks and writes it, and every process checks its inputs before any trains."""
    if resume and force:
        raise UsageError(
            "--resume continues the run in --out and --force overwrites it; give one of them"
        )
    run, world = RunDir(out), distributed.world()
    if resume and world.writes and not run.path.is_dir():
        raise UsageError(
            f"--resume: {out} holds no checkpoint (there is no such directory); "
            "start the run without --resume"
        )
    if dry_run:
        session, loader = _prepare(run, asked, resume, prefixes, quiet, timeout=dist_timeout)
        return session.dry_run(loader)
    # the process group first, so that rank 0 reports a bad input anywhere for every process
    device_error = world.start(asked.get("device"), dist_timeout, asked.get("backend"))
    try:
        with locked(out, "dl train", create=not resume) if world.writes else _nothing():

            def ready():
                if device_error:
                    raise device_error
                session, loader = _prepare(run, asked, resume, prefixes, quiet, world, dist_timeout)
                if not resume and world.writes:  # every input checked: --force may remove
                    run.prepare(force)
                return session, loader

            session, loader = world.agree(
                ready,
                lambda prepared: distributed.fingerprint(
                    prepared[0].settings, prepared[0].data.texts
                ),
            )
            return session.loop(loader, print_every, save_every, save_every_steps, save_minutes)
    except distributed.PeerLost as err:
        world.stop(err)  # JAX: the message, and no wait for the lost process (it would abort)
        raise
    finally:
        world.stop()


@contextlib.contextmanager
def _nothing():
    yield


def _prepare(
    run: RunDir,
    asked: dict,
    resume: bool,
    prefixes,
    quiet: bool,
    world=distributed.ONE,
    timeout: float = 300.0,
):
    """``(session, loader)`` with every input checked and the model built (on rank 0's
    checkpoint where resuming under torchrun: rank 0 reads it for every process); JAX's
    collectives wait ``timeout`` seconds (--dist-timeout) before they give up."""
    if resume:
        settings, params, optimizer_state, meta, carried = world.first(
            lambda: _resume_settings(run, asked, run.resume_stem())
        )
    else:
        settings, params, optimizer_state, meta, carried = resolve(asked), None, None, {}, []
    world.check(settings)
    if settings["backend"] == "jax":  # before JAX starts, which reads its flags once
        backends.collective_timeout(timeout)
    device = world.device(settings["device"])
    data = load_data(settings, tokenizers.from_dict(meta["tokenizer"]) if resume else None)
    if resume:
        check_same_texts(run.path, data, meta["data"])
    if prefixes is None:
        prefixes = BOOK_PREFIXES if settings["text"] is None else (data.first_words(),)
    check_prefixes(prefixes, data.tokenizer)
    config = model_config(settings, len(data.tokenizer))
    try:
        loader = SeqDataLoader(
            settings["batch_size"],
            settings["num_steps"],
            settings["random_iter"],
            corpus=data.train,
        )
    except ValueError as err:
        held = [
            f"--{f.replace('_', '-')} {settings[f]}"
            for f in ("val_fraction", "test_fraction")
            if settings[f]
        ]
        if not held:
            raise
        total = len(data.train) + len(data.val) + len(data.test)
        raise UsageError(
            f"{' and '.join(held)} {'leaves' if len(held) == 1 else 'leave'} "
            f"{len(data.train):,} of {total:,} tokens for training: {err}, or a smaller "
            f"{' or '.join(h.split()[0] for h in held)}"
        ) from None
    model = build_model(
        settings,
        config,
        params or lm.init_params(config, settings["seed"], kind=settings["init"]),
        device,
    )
    if world.active and world.writes and lm.any_dropout(config) and world.framework == "torch":
        note(
            "dropout under torchrun: each process draws the masks of its own rows, as DDP "
            "does, so the run is not the one-process run's (without dropout it is)"
        )
    schedule, plateau = longrun.plan(settings, loader.num_batches, meta, len(data.val) > 0)
    session = _Session(
        run,
        settings,
        data,
        config,
        model,
        meta,
        prefixes,
        quiet or not world.writes,
        optimizer_state,
        world,
    )
    session.plan(schedule, plateau, carried)
    return session, loader


def check_same_texts(run: Path, data: Data, stored: dict, command: str = "--resume") -> None:
    """Refuse ``data`` whose texts are not run ``run``'s (their SHA-256 differ)."""
    for dest, text in data.texts.items():
        sha256 = stored["sha256"] if dest == "text" else (stored.get(dest) or {}).get("sha256")
        if text.sha256 != sha256:
            flag = f"--{dest.replace('_', '-')}"
            raise UsageError(
                f"{command}: the text {text.source} is not the one {run} was "
                f"trained on (its sha256 differs); give the same {flag}"
            )


class _Session:
    """One invocation of ``dl train``: the loop over updates and epochs, its output and its
    checkpoints; :mod:`dl.cli.longrun` holds its position, schedule checks and cadence."""

    def __init__(
        self,
        run,
        settings,
        data,
        config,
        model,
        meta,
        prefixes,
        quiet,
        optimizer_state=None,
        world=distributed.ONE,
    ):
        self.run, self.settings, self.data, self.config = run, settings, data, config
        self.optimizer_state = optimizer_state  # to continue from; then the last saved one
        self.model, self.prefixes, self.quiet = model, prefixes, quiet
        self.position = longrun.Position.of(meta)
        self.best_val_loss = meta.get("best_val_loss")
        self.evals_since_best = meta.get("evals_since_best", 0)
        self.records = []
        self.saved = dataclasses.replace(self.position) if meta else None  # model.*'s position
        self.trainer = model.trainer(optimizer_config(settings), settings["clip"])
        self.world = world  # under torchrun: this process's rows; rank 0 alone writes
        self.lockstep = distributed.Lockstep(self.trainer) if world.active else None
        self.flags = set()  # the lockstep flags raised for the last update
        self.state, self.snapshot = None, None  # the carried state; the last epoch's end
        self.stop = None  # what ends training before --epochs: "max-time" or "patience"
        self.stepping = self.last_batch = False  # inside an update; before an epoch's end
        self.evaluated_step, self.val_loss = None, None
        self.test = None  # the test figures, once training has ended

    def plan(self, schedule, plateau, carried: list) -> None:
        """The run's schedule and plateau (:func:`dl.cli.longrun.plan`) and the recurrent
        state a resumed epoch carries on; refuse a schedule the backend cannot set."""
        self.schedule, self.plateau, self.carried = schedule, plateau, carried
        self.scheduled = not schedule.constant or bool(plateau.factor)
        self.lr_set = self.settings["lr"]  # the rate the optimizer holds
        if self.scheduled and not hasattr(self.trainer, "set_lr"):
            raise UsageError(
                f"--schedule, --warmup and --plateau-factor set the learning rate between "
                f"updates, which the {self.settings['backend']} backend cannot do (its trainer "
                "has no set_lr)"
            )

    def say(self, line: str) -> None:
        if not self.quiet:
            print(line, flush=True)

    def dry_run(self, loader) -> int:
        X, Y = next(iter(loader))
        self.trainer.train_step(X, Y, self.trainer.begin_state(X.shape[0]))
        loss = self.trainer.take_loss_sum() / Y.size
        s = self.settings
        self.say(
            f"dry run: {s['cell']} ({s['impl']}, {s['backend']} on "
            f"{self.model.device_name}) with {self.config.num_params():,} parameters; "
            f"{self._token_counts()} of {self.data.source}, vocabulary "
            f"{len(self.data.tokenizer):,} ({s['token']}); one batch trained (loss {loss:.3f}); "
            "nothing written"
        )
        return 0

    def _token_counts(self) -> str:
        train, val, test = (len(part) for part in (self.data.train, self.data.val, self.data.test))
        if not test:
            return f"{train:,} training and {val:,} validation tokens"
        return f"{train:,} training, {val:,} validation and {test:,} test tokens"

    def loop(
        self, loader, print_every: int, save_every: int, save_every_steps=None, save_minutes=None
    ) -> int:
        s, pos = self.settings, self.position
        if pos.step or pos.epoch:  # resumed: what follows the checkpoint is trained again

            def reconcile():  # rank 0's files, for every process
                records = self.run.keep_metrics_until(pos.epoch, pos.step, pos.describe())
                return records, self.run.check_best(pos.epoch, pos.step)

            self.records, damaged = self.world.first(reconcile)
            if damaged:  # best.* damaged: saved anew from now on
                self.best_val_loss = None
        if self.optimizer_state is not None:
            self.trainer.load_optimizer_state(self.optimizer_state)
        if self.carried and not s["random_iter"]:
            rows = s["batch_size"] // self.world.size
            carried = self.carried
            if self.world.active:
                carried = self.world.state_rows(carried, distributed.batch_axes(self._begin))
            self.state = core.restore_state(self.trainer.begin_state(rows), carried)
        bar = self._progress_bar(loader)
        timers = self.world.writes  # under torchrun rank 0's clock decides for every process
        cadence = longrun.Cadence(
            s["eval_every"],
            save_every_steps,
            save_minutes if timers else None,
            s["max_time"] if timers else None,
            1.0 if bar is not None else None,
        )
        self.deadline = cadence.deadline
        self.record_started, self.record_tokens = time.perf_counter(), pos.num_tokens
        try:
            with signals.polled():  # a signal is raised between two updates (signals.check)
                self._train(loader, cadence, bar, print_every, save_every)
                self._finish()
                signals.check()
        except KeyboardInterrupt as err:  # Ctrl-C or SIGTERM
            return self._interrupted(bar, err)
        except core.DivergedError as err:
            self._save_snapshot()
            self._close(bar)
            error = TrainingDiverged if self.world.writes else distributed.Reported
            raise error(f"{err} {self._kept()}") from None
        except WriteError as err:  # a full disk, a read-only directory (before: a ValueError)
            self._close(bar)
            raise WriteError(f"{err}. {self._kept()}") from None
        except (RuntimeError, ValueError) as err:  # a collective failed: a process ended or hangs
            if not self.world.active or not distributed.collective_failed(err):
                raise
            self._save_snapshot()
            self._close(bar)
            message = f"{distributed.lost(self.world, err)}. {self._kept()}"
            raise distributed.PeerLost(message) from None
        self._close(bar)
        self._summary()
        return 0

    def _train(self, loader, cadence, bar, print_every, save_every) -> None:
        """Epochs from the position on, update by update, until --epochs or a stop."""
        s, trainer = self.settings, self.trainer
        for epoch in range(self.position.epoch + 1, s["epochs"] + 1):
            seed = epoch_seed(s["seed"], epoch)
            loader.rng = random.Random(seed)
            self.model.reseed(seed)
            batches = self._scheduled(itertools.islice(loader, self.position.batch, None), epoch)
            for tokens, state in core.train_batches(trainer, batches, s["random_iter"], self.state):
                self.state, self.stepping = state, False
                pos = self.position
                pos.batch, pos.step, pos.num_tokens = (
                    pos.batch + 1,
                    pos.step + 1,
                    pos.num_tokens + tokens * self.world.size,  # the global batch's
                )
                self._check()
                self._after_step(cadence, bar)
                if self.stop and not self.last_batch:
                    return
            self._end_epoch(epoch, cadence, bar, print_every, save_every)
            if self.stop:
                return

    def _scheduled(self, batches, epoch: int):
        """``batches``, each after its update's dropout seed and learning rate are set; says
        whether the one yielded is the epoch's last (it looks one batch ahead)."""
        s, pos, stochastic = self.settings, self.position, lm.any_dropout(self.config)
        batches = iter(batches)
        batch = next(batches, None)
        while batch is not None:
            following = next(batches, None)
            self.last_batch = following is None
            if stochastic:  # masks of (seed, epoch, batch) alone: the same after a resume
                self.model.reseed(longrun.step_seed(s["seed"], epoch, pos.batch))
            if self.scheduled and (lr := self._lr()) != self.lr_set:
                self.trainer.set_lr(lr)
                self.lr_set = lr
            self.stepping = True
            yield self.world.rows(batch)
            batch = following

    def _check(self) -> None:
        """Raise a signal noted meanwhile (Ctrl-C, SIGTERM); under torchrun one that any
        process noted, after the update that carried its flag, on every process together."""
        if self.lockstep is None:
            signals.check()
            return
        self.flags = self.lockstep.raised()
        noted = signals.take()
        if noted is not None:
            self.lockstep.raise_flag(
                "terminate" if isinstance(noted, signals.Terminated) else "interrupt"
            )
        if "terminate" in self.flags:
            raise signals.Terminated
        if "interrupt" in self.flags:
            raise KeyboardInterrupt

    def _begin(self, rows: int):
        return self.trainer.begin_state(rows)

    def _lr(self) -> float:
        """The rate of the next update: --lr, the schedule at the update count, the plateau."""
        return self.settings["lr"] * self.schedule.factor(self.position.step) * self.plateau.scale

    def _after_step(self, cadence, bar) -> None:
        """Evaluate, save, stop or refresh the bar as due after an update (the epoch's last
        update leaves evaluating and saving to the epoch's end)."""
        now = time.monotonic() if cadence.timed else 0.0
        out_of_time, timed_save = cadence.out_of_time(now), cadence.timed_save(now)
        if self.lockstep is not None:  # rank 0's clock, for every process one update later
            for flag, due in (("max_time", out_of_time), ("save", timed_save)):
                if due:
                    self.lockstep.raise_flag(flag)
            out_of_time, timed_save = "max_time" in self.flags, "save" in self.flags
        if out_of_time:
            self.stop = "max-time"
        if self.last_batch:
            return
        if cadence.evaluate(self.position.step):
            self._judge(self._new_record(self.position.epoch + 1, True), None)
        due = timed_save or cadence.step_save(self.position.step)
        if due and not self.stop:  # a stop saves at _finish
            self._save_current()
        if bar is not None and cadence.refresh_due(now):
            self._refresh(bar)

    def _end_epoch(self, epoch, cadence, bar, print_every, save_every) -> None:
        final = epoch == self.settings["epochs"] or self.stop is not None
        self.last_batch = True  # (also where a resume found the epoch's batches all trained)
        evaluate = cadence.eval_every is None or cadence.evaluate(self.position.step) or final
        record = self._new_record(epoch, evaluate)
        self.position = longrun.Position(epoch, 0, self.position.step)
        self.state, self.record_tokens = None, 0  # each epoch begins from a fresh state
        self.optimizer_state = self.trainer.optimizer_state()
        self.snapshot = (
            self.model.numpy_params(),
            self.optimizer_state,
            dataclasses.replace(self.position),
        )
        self._judge(record, self.snapshot[0])
        timed = cadence.save(self.position.step, time.monotonic()) if cadence.timed else False
        if epoch % save_every == 0 or final or timed:
            self._save(self.snapshot[0], "model")
            self._plot()
        if bar is not None:
            self._refresh(bar, sync=False)
            if epoch % print_every == 0:
                bar.write(self._sample(self.prefixes[0]))
        elif epoch % print_every == 0:
            self.say(self._sample(self.prefixes[0]))
        self.record_started = time.perf_counter()  # tokens/s: of the updates, not of samples

    def _new_record(self, epoch: int, evaluate: bool) -> dict:
        """The figures since the last record, appended to metrics.jsonl: the epoch's (or its
        part's so far) training loss, and the validation loss where ``evaluate``."""
        self._sync_loss()
        pos, now = self.position, time.perf_counter()
        speed = (pos.num_tokens - self.record_tokens) / max(now - self.record_started, 1e-9)
        loss_sum, num_tokens = pos.loss_sum, pos.num_tokens
        train_ppl = core.epoch_perplexity(loss_sum, num_tokens, epoch, self.settings["lr"])
        record = self._record(
            epoch, loss_sum / num_tokens, train_ppl, speed, self.record_started, evaluate
        )
        record["step"] = pos.step
        if pos.batch and not self.last_batch:
            record["batch"] = pos.batch
            record["epochs"] = pos.epoch + min(pos.batch / self.batches_per_epoch, 1)
        if self.scheduled:
            record["lr"] = self.lr_set
        if evaluate and record["val_loss"] is not None:
            self.evaluated_step, self.val_loss = pos.step, record["val_loss"]
        self.records.append(record)
        if self.world.writes:
            self.run.append_metrics(record)
        self.record_started, self.record_tokens = time.perf_counter(), pos.num_tokens
        return record

    def _judge(self, record: dict, params) -> None:
        """After an evaluation: the best checkpoint (``params``, else the current weights), the
        plateau's cut and early stopping."""
        val_loss = record["val_loss"]
        if val_loss is None:
            return
        if self.best_val_loss is None or val_loss < self.best_val_loss:
            self.best_val_loss, self.evals_since_best = val_loss, 0
            carried = self._carried()
            self._save(self.model.numpy_params() if params is None else params, "best", carried)
        else:
            self.evals_since_best += 1
        if self.plateau.update(val_loss):
            self._write(
                f"validation loss {val_loss:.4f}, not below {self.plateau.best:.4f}: learning "
                f"rate x{self.plateau.factor:g}, now {self._lr():.4g}"
            )
        if self.settings["patience"] and self.evals_since_best >= self.settings["patience"]:
            self.stop = "patience"

    def _sync_loss(self) -> None:
        """The device's loss sum into the position (one host sync); DivergedError if it is
        not finite."""
        pos = self.position
        pos.loss_sum += self.trainer.take_loss_sum() * self.world.size  # the global batch's
        if pos.num_tokens:
            core.epoch_perplexity(pos.loss_sum, pos.num_tokens, pos.epoch + 1, self._lr())

    def _carried(self) -> list | None:
        """The state the next batch of the epoch continues from, as arrays (mid-epoch)."""
        if not self.position.batch or self.state is None or self.settings["random_iter"]:
            return None
        arrays = core.state_arrays(self.state)
        if self.world.active:  # every process's rows: a resume may run on another count
            arrays = self.world.gather_state(arrays, distributed.batch_axes(self._begin))
        return arrays

    def _save_current(self) -> None:
        """Save where training stands now: weights, optimizer, carried state, position."""
        self._sync_loss()
        self.optimizer_state = self.trainer.optimizer_state()
        self._save(self.model.numpy_params(), "model", self._carried())

    def _save_snapshot(self) -> None:
        """Save the last epoch's end if nothing later is saved (after a divergence, or an
        interruption inside an update)."""
        if self.snapshot is None or (self.saved and self.saved.step >= self.snapshot[2].step):
            return
        params, self.optimizer_state, self.position = self.snapshot
        self._save(params, "model")

    def _finish(self) -> None:
        """At the end: the validation figures where the last update has none, and the
        checkpoint of the last update (evaluating and saving deferred signals meanwhile)."""
        pos = self.position
        if len(self.data.val) and self.evaluated_step != pos.step and pos.batch:
            self._judge(self._new_record(pos.epoch + 1, True), None)
        self._evaluate_test()  # stored in the last checkpoint's meta
        if (
            self.world.active  # the same choice on every process (a save gathers the state)
            or self.saved is None
            or self.saved.step < pos.step
            or not self.records
            or self.test
        ):
            self._save_current()
        self._plot()

    def _plot(self) -> None:
        if self.world.writes:
            self.run.plot(self.records)

    def _kept(self) -> str:
        if not self.world.writes:
            return "Rank 0 keeps the last checkpoint it saved."
        if self.saved is None:
            return "Nothing was saved."
        return (
            f"The checkpoint of {self.saved.describe()} in {self.run.path} is kept; "
            f"continue with `dl train --out {self.run.path} --resume`."
        )

    def _record(self, epoch, train_loss, train_ppl, speed, started, evaluate=True) -> dict:
        record = {
            "epoch": epoch,
            "train_loss": train_loss,
            "train_perplexity": train_ppl,
            "val_loss": None,
            "val_perplexity": None,
            "tokens_per_sec": speed,
        }
        if len(self.data.val) and evaluate:
            record.update(self._figures(self.model, self.data.val, "val"))
        record["seconds"] = time.perf_counter() - started
        return record

    def _refresh(self, bar, sync: bool = True) -> None:
        """The bar at the update count, with the epoch's running loss (synced here, at most
        once a second), the last validation loss, the rate where scheduled, tokens/s and the
        time ``--max-time`` leaves (the bar's own estimate counts every epoch)."""
        if sync:
            self._sync_loss()
        pos = self.position
        bar.update(pos.step - bar.n)
        postfix = {}
        if pos.num_tokens:  # the epoch's so far, else the last epoch's
            postfix["loss"] = f"{pos.loss_sum / pos.num_tokens:.3f}"
        elif self.records:
            postfix["loss"] = f"{self.records[-1]['train_loss']:.3f}"
        if self.val_loss is not None:
            postfix["val"] = f"{self.val_loss:.3f}"
        if self.scheduled:
            postfix["lr"] = f"{self.lr_set:.3g}"
        if self.records:
            postfix["tok/s"] = f"{self.records[-1]['tokens_per_sec']:,.0f}"
        if self.deadline < math.inf:
            left = max(0.0, self.deadline - time.monotonic())
            postfix["max-time left"] = bar.format_interval(left)
        bar.set_postfix(postfix)

    def _write(self, line: str) -> None:
        """A line of output above the progress bar, if there is one."""
        if self.bar is not None:
            self.bar.write(line)
        else:
            self.say(line)

    def _figures(self, model, ids, part: str) -> dict:
        """``{part}_loss`` (nats per token), ``_perplexity`` and, for characters or bytes,
        ``_bits_per_char`` or ``_bits_per_byte`` of ``model`` on ``ids``."""
        loss_sum, num_tokens = lm.evaluate(
            model, ids, self.settings["batch_size"], self.settings["num_steps"]
        )
        figures = text_figures(loss_sum, num_tokens, self.data.tokenizer.bits_per)
        return {f"{part}_{name}": value for name, value in figures.items()}

    def _evaluate_test(self) -> None:
        """The test figures, once, on the best checkpoint (the last weights without one); by
        rank 0 alone, which holds the checkpoint."""
        if not len(self.data.test) or not self.world.writes:
            return
        model, position = self.model, self.position
        if checkpoint.exists(self.run.path, "best"):
            params, meta = checkpoint.load(self.run.path, "best")
            model, position = (
                build_model({**self.settings, "devices": 1}, self.config, params),
                longrun.Position.of(meta),
            )
        self.test = {
            "checkpoint": "best" if model is not self.model else "model",
            "epoch": position.epoch,
            "where": position.describe(),
        }
        self.test.update(self._figures(model, self.data.test, "test"))

    def _sample(self, prefix: str) -> str:
        return sample(self.model, self.data.tokenizer, prefix)

    def _save(self, params: dict, stem: str, carried: list | None = None) -> None:
        last = self.records[-1] if self.records else {}
        texts = {
            dest: {
                "source": text.source,
                "sha256": text.sha256,
                "path": self.settings[dest] and str(Path(self.settings[dest]).resolve()),
            }
            for dest, text in self.data.texts.items()
        }
        meta = {
            "model": self.config.to_dict(),
            "settings": self.settings,
            "tokenizer": self.data.tokenizer.to_dict(),
            "data": {
                **texts.pop("text"),
                **texts,
                "train_tokens": len(self.data.train),
                "val_tokens": len(self.data.val),
                "test_tokens": len(self.data.test),
            },
            "prefixes": list(self.prefixes),
            "test": self.test,
            "epoch": self.position.epoch,
            "position": self.position.to_meta(),
            "finished": self.position.epoch >= self.settings["epochs"],
            "ended": self.stop,
            "best_val_loss": self.best_val_loss,
            "evals_since_best": self.evals_since_best,
            "schedule": self.schedule.to_dict(),
            "plateau": self.plateau.state(),
            "train_perplexity": last.get("train_perplexity"),
            "val_perplexity": last.get("val_perplexity"),
            "seconds": sum(r["seconds"] for r in self.records),
            "backend": self.settings["backend"],
            "dl_version": __version__,
            "rng": "epoch e draws batches from numpy SeedSequence([seed, e]); with dropout, "
            "batch b of epoch e its masks from SeedSequence([seed, e, b])",
        }
        if not self.world.writes:
            if stem == "model":
                self.saved = dataclasses.replace(self.position)
            return
        with signals.deferred():  # a signal meanwhile is raised once the checkpoint is whole
            checkpoint.save(
                self.run.path,
                params,
                meta,
                stem,
                self.optimizer_state if stem == "model" else None,
                carried,
            )
            if stem == "model":
                self.saved = dataclasses.replace(self.position)

    def _progress_bar(self, loader):
        self.batches_per_epoch = loader.num_batches
        self.bar = None
        if self.quiet or not sys.stderr.isatty():
            return None
        from tqdm import tqdm

        self.bar = tqdm(
            total=self.settings["epochs"] * loader.num_batches,
            initial=self.position.step,
            unit="step",
            dynamic_ncols=True,
        )
        return self.bar

    @staticmethod
    def _close(bar) -> None:
        if bar is not None:
            bar.close()

    def _interrupted(self, bar, err: KeyboardInterrupt) -> int:
        """Save where training stands (the last epoch's end if the signal came inside an
        update); the exit status of the signal (130 or 143)."""
        self._close(bar)
        with signals.deferred():
            try:
                if self.stepping:
                    self._save_snapshot()
                elif (
                    self.world.active  # the same choice on every process (a save gathers)
                    or self.saved is None
                    or self.saved.step < self.position.step
                ):
                    self._save_current()
            except core.DivergedError:
                self._save_snapshot()
            self._plot()
        if not self.world.writes:
            return signals.exit_status(err)
        if self.saved is not None:
            print(
                f"\ninterrupted: {self.saved.describe()} is saved in {self.run.path}; "
                f"continue with `dl train --out {self.run.path} --resume`",
                file=sys.stderr,
            )
        else:
            print(
                "\ninterrupted in the first epoch: nothing was saved; start the run again "
                "(without --resume)",
                file=sys.stderr,
            )
        return signals.exit_status(err)

    def _summary(self) -> None:
        s, last = self.settings, self.records[-1] if self.records else None
        if last is not None:  # the speed of the last whole epoch: a part's may be one update
            speed = next((r for r in reversed(self.records) if "batch" not in r), last)
            self.say(
                f"perplexity {last['train_perplexity']:.1f}, {speed['tokens_per_sec']:.1f} "
                f"tokens/sec on {self.model.device_name}"
            )
            if last["val_perplexity"] is not None:
                self.say(f"validation {describe(last, self.data.tokenizer.bits_per, 'val_')}")
        if self.test:
            self.say(
                f"test {describe(self.test, self.data.tokenizer.bits_per, 'test_')} on the "
                f"{self.test['checkpoint']} checkpoint ({self.test['where']})"
            )
        where = self.position.describe()
        if self.stop == "max-time":
            self.say(
                f"--max-time {s['max_time']:g}s spent: stopped at {where} of {s['epochs']} epochs"
            )
        elif self.stop == "patience":
            self.say(
                f"early stop at {where}: no better validation loss in {s['patience']} "
                f"evaluations (best {self.best_val_loss:.4f}, kept as best.safetensors)"
            )
        elif s["max_time"] is not None:
            self.say(f"all {s['epochs']} epochs trained within --max-time {s['max_time']:g}s")
        for prefix in self.prefixes:
            self.say(self._sample(prefix))
        self.say(f"saved {checkpoint.weights_path(self.run.path)} ({where})")
