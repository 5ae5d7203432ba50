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
import dataclasses
import hashlib
import itertools
import random
import sys
import time
from pathlib import Path

import numpy as np

from dl import __version__, checkpoint, lm, optim
from dl import train as core
from dl.cli import backends, longrun, signals
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
from dl.cli.saved import check_finite
from dl.data import text as textdata
from dl.data.batches import SeqDataLoader
from dl.files import WriteError
from dl.metrics import perplexity
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
        help="prepare data and model, train one batch, write nothing",
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
    )


@dataclasses.dataclass
class Data:
    """The token ids of a run, its vocabulary and where they came from."""

    train: list[int]
    val: list[int]
    vocab: textdata.Vocab
    source: str
    sha256: str
    first_line: str


def load_lines(path: str | None) -> tuple[list[str], str, str]:
    """``(cleaned lines, source, sha256 of the raw text)`` of ``path`` or The Time Machine."""
    if path is None:
        from dl.data import hub

        raw = hub.download("time_machine").read_text(encoding="utf-8")
        source = "The Time Machine"
    else:
        raw, source = textdata.read_text_file(path), str(path)
    lines = textdata.normalize_lines(raw)
    if not any(lines):
        raise UsageError(
            f"{source}: no letters left after cleaning (the book keeps letters "
            "only, lower-cased); give a text with words in it"
        )
    return lines, source, hashlib.sha256(raw.encode("utf-8")).hexdigest()


def load_data(settings: dict) -> Data:
    lines, source, sha = load_lines(settings["text"])
    train_ids, val_ids, vocab = textdata.split_corpus(
        lines,
        settings["token"],
        settings["max_tokens"],
        settings["min_freq"],
        settings["val_fraction"],
    )
    if settings["val_fraction"] and len(val_ids) < 2:
        raise UsageError(
            f"{source}: --val-fraction {settings['val_fraction']} holds out "
            f"{len(val_ids)} tokens of {len(train_ids) + len(val_ids)}; "
            "raise it or use a longer text"
        )
    if len(vocab) < 2:
        most = max((freq for _, freq in vocab.token_freqs), default=0)
        raise UsageError(
            f"--min-freq {settings['min_freq']}: no token of {source} occurs that "
            f"often (the most frequent, {most} times), so the vocabulary would be "
            "only <unk>; lower --min-freq"
        )
    return Data(train_ids, val_ids, vocab, source, sha, next(line for line in lines if line))


def resolve(settings: dict) -> dict:
    """Every option with its default filled in, the token cap and backend made explicit."""
    settings = with_defaults(settings)
    if settings["max_tokens"] is None:
        settings["max_tokens"] = 10000 if settings["text"] is None else -1
    if settings["max_tokens"] == 0 or settings["max_tokens"] < -1:
        raise UsageError(
            f"--max-tokens {settings['max_tokens']}: give a positive count, or -1 for all tokens"
        )
    parse_device(settings["device"])  # a malformed name fails before any work
    if settings["dropout"] and settings["layers"] == 1:
        raise UsageError(
            f"--dropout {settings['dropout']} acts between stacked layers; give "
            "--layers 2 or more, or leave --dropout out"
        )
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
    settings["random_iter"] = bool(settings["random_iter"])
    settings["no_output_tanh"] = bool(settings["no_output_tanh"])
    return settings


def model_config(settings: dict, vocab_size: int) -> lm.LMConfig:
    return lm.LMConfig(
        cell=settings["cell"],
        vocab_size=vocab_size,
        num_hiddens=settings["hidden"],
        num_layers=settings["layers"],
        dropout=settings["dropout"],
        output_tanh=not settings["no_output_tanh"],
    )


def optimizer_config(settings: dict) -> OptimizerConfig:
    """The run's optimizer (runs saved before ``--optimizer`` existed trained with SGD)."""
    return OptimizerConfig(
        settings.get("optimizer", "sgd"), settings["lr"], settings.get("weight_decay", 0.0)
    )


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of epoch ``epoch``'s batch offsets and dropout: a function of both only."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


def build_model(settings: dict, config: lm.LMConfig, params: dict):
    cls = backends.model_class(settings["backend"], settings["impl"])
    return cls(config, params, device=settings["device"], precision=settings["precision"])


def prefix_tokens(prefix: str, token: str):
    """The tokens of ``prefix`` cleaned as the training text: a string of characters, or a
    list of words."""
    cleaned = " ".join(textdata.normalize_lines(prefix)).strip() or prefix
    return cleaned if token == "char" else cleaned.split()


def check_prefixes(prefixes, vocab, token: str) -> None:
    """Refuse a prefix with no token, or none the model knows (it would see only <unk>)."""
    for prefix in prefixes:
        tokens = prefix_tokens(prefix, token)
        if not tokens:
            raise UsageError(
                f"--prefix {prefix!r} holds nothing to continue; give a few "
                f"{'characters' if token == 'char' else 'words'} of the text"
            )
        if all(t not in vocab.token_to_idx for t in tokens):
            raise UsageError(
                f"--prefix {prefix!r}: none of its {token}s is in the model's "
                f"vocabulary of {len(vocab)} (it would see only <unk>); give a "
                "prefix written like the training text"
            )


def sample(model, vocab, prefix: str, token: str, num: int = 50, choose=core.greedy) -> str:
    """``prefix`` (cleaned as the training text) and ``num`` tokens more from ``model``."""
    return core.predict_tokens(
        prefix_tokens(prefix, token), num, vocab, model.step, model.begin_state(1), choose
    )


def _resume_settings(
    run: RunDir, asked: dict, stem: str = "model"
) -> tuple[dict, dict, dict, dict, list]:
    """The stored run's ``(settings, params, optimizer state, meta, carried state)`` from
    checkpoint ``stem``; refuse changed model options and weights that are not finite."""
    params, optimizer_state, carried, meta = checkpoint.load_run(run.path, stem)
    check_finite(params, checkpoint.weights_path(run.path, stem), "continue")
    stored = meta["settings"]
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
            if k in ("epochs", "backend", "device", "precision", "text", "impl")
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
    if "text" not in asked:
        settings["text"] = _stored_text(run, settings["text"], meta["data"])
    config = optimizer_config(settings)
    if not optimizer_state and config.slots:
        raise UsageError(
            f"--resume: {checkpoint.weights_path(run.path, stem)} holds no "
            f"{config.name} state, so the run cannot continue exactly; start a "
            "new run"
        )
    return settings, params, optimizer_state or optim.zero_state(config, {}), meta, carried


def _stored_text(run: RunDir, text: str | None, data: dict) -> str | None:
    """The text a resumed run trained on: as it was given, else (a path relative to where the
    run started) its absolute path, with a note; refuse, saying where the path came from."""
    if text is None or Path(text).is_file():
        return text
    absolute = data.get("path")
    if absolute and Path(absolute).is_file():
        note(
            f"the run's --text {text} is not found from {Path.cwd()}; using {absolute}, "
            "where it was when the run started"
        )
        return absolute
    raise UsageError(
        f"--resume: {run.path} was trained on --text {text} (stored in the run), "
        f"which is not found from {Path.cwd()}; give --text PATH to the same text"
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
) -> int:
    """Run ``dl train``; returns the exit status (0 done, 130 / 143 interrupted). The run
    directory is locked (:func:`dl.cli.rundir.locked`) except for a dry run; every input is
    checked before anything in it changes."""
    if resume and force:
        raise UsageError(
            "--resume continues the run in --out and --force overwrites it; give one of them"
        )
    run = RunDir(out)
    if resume and not run.path.is_dir():
        raise UsageError(
            f"--resume: {out} holds no checkpoint (there is no such directory); "
            "start the run without --resume"
        )
    if dry_run:
        session, loader = _prepare(run, asked, resume, prefixes, quiet)
        return session.dry_run(loader)
    with locked(out, "dl train", create=not resume):
        session, loader = _prepare(run, asked, resume, prefixes, quiet)
        if not resume:  # only now, with every input checked, may --force remove an old run
            run.prepare(force)
        return session.loop(loader, print_every, save_every, save_every_steps, save_minutes)


def _prepare(run: RunDir, asked: dict, resume: bool, prefixes, quiet: bool):
    """``(session, loader)`` with every input checked and the model built."""
    if resume:
        settings, params, optimizer_state, meta, carried = _resume_settings(
            run, asked, run.resume_stem()
        )
    else:
        settings, params, optimizer_state, meta, carried = resolve(asked), None, None, {}, []
    data = load_data(settings)
    if resume and data.sha256 != meta["data"]["sha256"]:
        raise UsageError(
            f"--resume: the text {data.source} is not the one {run.path} was "
            "trained on (its sha256 differs); give the same --text"
        )
    if prefixes is None:
        prefixes = (
            BOOK_PREFIXES if settings["text"] is None else (" ".join(data.first_line.split()[:2]),)
        )
    check_prefixes(prefixes, data.vocab, settings["token"])
    config = model_config(settings, len(data.vocab))
    try:
        loader = SeqDataLoader(
            settings["batch_size"],
            settings["num_steps"],
            settings["random_iter"],
            corpus=data.train,
            vocab=data.vocab,
        )
    except ValueError as err:
        if not settings["val_fraction"]:
            raise
        raise UsageError(
            f"--val-fraction {settings['val_fraction']} leaves {len(data.train):,} "
            f"of {len(data.train) + len(data.val):,} tokens for training: {err}, "
            "or a smaller --val-fraction"
        ) from None
    model = build_model(settings, config, params or lm.init_params(config, settings["seed"]))
    schedule, plateau = longrun.plan(settings, loader.num_batches, meta)
    session = _Session(run, settings, data, config, model, meta, prefixes, quiet, optimizer_state)
    session.plan(schedule, plateau, carried)
    return session, loader


class _Session:
    """One invocation of ``dl train``: the loop over updates and epochs, its output and its
    checkpoints; :mod:`dl.cli.longrun` holds its position, schedule checks and cadence."""

    def __init__(
        self, run, settings, data, config, model, meta, prefixes, quiet, optimizer_state=None
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
        self.state, self.snapshot = None, None  # the carried state; the last epoch's end
        self.stop = None  # what ends training before --epochs: "max-time" or "patience"
        self.stepping = self.last_batch = False  # inside an update; before an epoch's end
        self.evaluated_step, self.val_loss = None, None

    def plan(self, schedule, plateau, carried: list) -> None:
        """The run's schedule and plateau (:func:`dl.cli.longrun.plan`) and the recurrent
        state a resumed epoch carries on; refuse a schedule the backend cannot set."""
        self.schedule, self.plateau, self.carried = schedule, plateau, carried
        self.scheduled = not schedule.constant or bool(plateau.factor)
        self.lr_set = self.settings["lr"]  # the rate the optimizer holds
        if self.scheduled and not hasattr(self.trainer, "set_lr"):
            raise UsageError(
                f"--schedule, --warmup and --plateau-factor set the learning rate between "
                f"updates, which the {self.settings['backend']} backend cannot do yet; use "
                "--backend torch"
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
            f"{len(self.data.train):,} training "
            f"and {len(self.data.val):,} validation tokens of {self.data.source}, "
            f"vocabulary {len(self.data.vocab):,}; one batch trained (loss {loss:.3f}); "
            "nothing written"
        )
        return 0

    def loop(
        self, loader, print_every: int, save_every: int, save_every_steps=None, save_minutes=None
    ) -> int:
        s, pos = self.settings, self.position
        if pos.step or pos.epoch:  # resumed: what follows the checkpoint is trained again
            self.records = self.run.keep_metrics_until(pos.epoch, pos.step, pos.describe())
            if self.run.check_best(pos.epoch, pos.step):  # damaged: saved anew from now on
                self.best_val_loss = None
        if self.optimizer_state is not None:
            self.trainer.load_optimizer_state(self.optimizer_state)
        if self.carried and not s["random_iter"]:
            template = self.trainer.begin_state(s["batch_size"])
            self.state = core.restore_state(template, self.carried)
        bar = self._progress_bar(loader)
        cadence = longrun.Cadence(
            s["eval_every"],
            save_every_steps,
            save_minutes,
            s["max_time"],
            1.0 if bar is not None else None,
        )
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
            raise TrainingDiverged(f"{err} {self._kept()}") from None
        except WriteError as err:  # a full disk, a directory made read-only meanwhile
            self._close(bar)
            raise WriteError(f"{err}. {self._kept()}") from None
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
                    pos.num_tokens + tokens,
                )
                signals.check()
                self._after_step(cadence, bar)
                if self.stop and not self.last_batch:
                    return
            self._end_epoch(epoch, cadence, bar, print_every, save_every)
            if self.stop:
                return

    def _scheduled(self, batches, epoch: int):
        """``batches``, each after its update's dropout seed and learning rate are set; says
        whether the one yielded is the epoch's last (it looks one batch ahead)."""
        s, pos, stochastic = self.settings, self.position, self.config.dropout > 0
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
            yield batch
            batch = following

    def _lr(self) -> float:
        """The rate of the next update: --lr, the schedule at the update count, the plateau."""
        return self.settings["lr"] * self.schedule.factor(self.position.step) * self.plateau.scale

    def _after_step(self, cadence, bar) -> None:
        """Evaluate, save, stop or refresh the bar as due after an update (the epoch's last
        update leaves evaluating and saving to the epoch's end)."""
        now = time.monotonic() if cadence.timed else 0.0
        if cadence.out_of_time(now):
            self.stop = "max-time"
        if self.last_batch:
            return
        if cadence.evaluate(self.position.step):
            self._judge(self._new_record(self.position.epoch + 1, True), None)
        if cadence.save(self.position.step, now) and not self.stop:  # a stop saves at _finish
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
            self.run.plot(self.records)
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
        pos.loss_sum += self.trainer.take_loss_sum()
        if pos.num_tokens:
            core.epoch_perplexity(pos.loss_sum, pos.num_tokens, pos.epoch + 1, self._lr())

    def _carried(self) -> list | None:
        """The state the next batch of the epoch continues from, as arrays (mid-epoch)."""
        if not self.position.batch or self.state is None or self.settings["random_iter"]:
            return None
        return core.state_arrays(self.state)

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
        if self.data.val and self.evaluated_step != pos.step and pos.batch:
            self._judge(self._new_record(pos.epoch + 1, True), None)
        if self.saved is None or self.saved.step < pos.step or not self.records:
            self._save_current()
        self.run.plot(self.records)

    def _kept(self) -> str:
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
        if self.data.val and evaluate:
            loss_sum, num_tokens = lm.evaluate(
                self.model, self.data.val, self.settings["batch_size"], self.settings["num_steps"]
            )
            record["val_loss"] = loss_sum / num_tokens
            record["val_perplexity"] = perplexity(loss_sum, num_tokens)
        record["seconds"] = time.perf_counter() - started
        return record

    def _refresh(self, bar, sync: bool = True) -> None:
        """The bar at the update count, with the epoch's running loss (synced here, at most
        once a second), the last validation loss, the rate where scheduled and tokens/s."""
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
        bar.set_postfix(postfix)

    def _write(self, line: str) -> None:
        """A line of output above the progress bar, if there is one."""
        if self.bar is not None:
            self.bar.write(line)
        else:
            self.say(line)

    def _sample(self, prefix: str) -> str:
        return sample(self.model, self.data.vocab, prefix, self.settings["token"])

    def _save(self, params: dict, stem: str, carried: list | None = None) -> None:
        last = self.records[-1] if self.records else {}
        meta = {
            "model": self.config.to_dict(),
            "settings": self.settings,
            "vocab": self.data.vocab.idx_to_token,
            "data": {
                "source": self.data.source,
                "sha256": self.data.sha256,
                "path": self.settings["text"] and str(Path(self.settings["text"]).resolve()),
                "train_tokens": len(self.data.train),
                "val_tokens": len(self.data.val),
            },
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
                elif self.saved is None or self.saved.step < self.position.step:
                    self._save_current()
            except core.DivergedError:
                self._save_snapshot()
            self.run.plot(self.records)
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
                self.say(f"validation perplexity {last['val_perplexity']:.1f}")
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
