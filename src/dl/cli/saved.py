"""Opening a trained run's checkpoint as a model of any installed backend."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dl import checkpoint, lm
from dl.cli import backends
from dl.cli.options import choice
from dl.data import tokenizers

CHECKPOINTS = ("auto", "best", "model")
LEGACY_TOKENS = {"char": "book-char", "word": "book-word"}  # --token before tokenizers


def upgrade(meta: dict) -> dict:
    """``meta`` of a run saved before tokenizers were saved as it is written now: its settings'
    token ``'char'`` / ``'word'`` (then the book's cleaning) as ``'book-char'`` /
    ``'book-word'``, its ``vocab`` list as the ``tokenizer``."""
    if "tokenizer" in meta or "settings" not in meta:
        return meta
    settings = dict(meta["settings"])
    settings["token"] = LEGACY_TOKENS.get(settings.get("token"), settings.get("token"))
    return {
        **meta,
        "settings": settings,
        "tokenizer": {"kind": settings["token"], "tokens": meta["vocab"]},
    }


def add_run_arguments(parser) -> None:
    """The run directory and how to load it: ``run``, ``--checkpoint``, ``--backend``,
    ``--device`` (``dl generate`` and ``dl eval``)."""
    parser.add_argument("run", type=Path, help="the run directory of `dl train`")
    parser.add_argument(
        "--checkpoint",
        type=choice(*CHECKPOINTS),
        default="auto",
        help="best, model (latest) or auto: best if kept, else latest",
    )
    parser.add_argument(
        "--backend",
        type=choice(*backends.PREFERENCE),
        default=None,
        help="the framework to load the weights into (default: the fastest installed)",
    )
    parser.add_argument(
        "--device", default=None, help="cpu, gpu, cuda:N (default: a GPU if there is one)"
    )


def check_finite(params: dict, path: Path, use: str = "generate") -> None:
    """Refuse weights holding NaN or infinite values, naming the file and the way forward."""
    bad = [name for name, value in params.items() if not np.isfinite(value).all()]
    if bad:
        raise checkpoint.CheckpointError(
            f"{path}: {len(bad)} of its {len(params)} weights ({', '.join(bad[:3])}"
            f"{', ...' if len(bad) > 3 else ''}) hold NaN or infinite values, so it cannot "
            f"{use}; the file is damaged: use the run's other checkpoint (--checkpoint best or "
            "model) or train again"
        )


def open_run(args):
    """:func:`open_model` for the arguments of :func:`add_run_arguments`."""
    return open_model(args.run, args.checkpoint, args.backend, args.device)


def open_model(
    run: Path, which: str = "auto", backend: str | None = None, device: str | None = None
):
    """``(model, tokenizer, meta, stem)`` of run directory ``run``.

    ``which``: ``'best'`` (lowest validation loss), ``'model'`` (latest) or ``'auto'`` (best if
    the run kept one, else latest). The weights load into ``backend`` whatever backend trained
    them, into the scratch implementation (both implementations save the same parameters).
    """
    run = Path(run)
    if not run.is_dir():
        raise checkpoint.CheckpointError(
            f"{run}: no such run directory; give the --out directory of a `dl train` run"
        )
    if checkpoint.exists(run, "forecast") and not any(
        checkpoint.exists(run, s) for s in ("model", "best")
    ):
        raise checkpoint.CheckpointError(
            f"{run} is a `dl forecast` run, not a language model; "
            f"use it with `dl forecast --from {run}`"
        )
    stem = which
    if which == "auto":
        stem = "best" if checkpoint.exists(run, "best") else "model"
    elif which == "best" and not checkpoint.exists(run, "best") and checkpoint.exists(run):
        raise checkpoint.CheckpointError(
            f"{run} kept no best checkpoint (it was trained without --val-fraction); use "
            "--checkpoint model"
        )
    try:
        params, meta = checkpoint.load(run, stem)
        check_finite(params, checkpoint.weights_path(run, stem))
    except checkpoint.CheckpointError as err:
        raise checkpoint.CheckpointError(f"{err}{_other_checkpoint(run, stem)}") from None
    try:
        meta = upgrade(meta)
        config = lm.LMConfig.from_dict(meta["model"])
        tokenizer = tokenizers.from_dict(meta["tokenizer"])
        lm.check_params(config, params)
        if len(tokenizer) != config.vocab_size:
            raise ValueError(f"{len(tokenizer)} tokens for {config.vocab_size} outputs")
    except (KeyError, TypeError, ValueError) as err:
        raise checkpoint.CheckpointError(
            f"{checkpoint.weights_path(run, stem)}: its description does not fit its weights "
            f"({err}); the checkpoint is damaged"
        ) from None
    cls = backends.model_class(backend or backends.choose(None))
    return cls(config, params, device=device), tokenizer, meta, stem


def _other_checkpoint(run: Path, stem: str) -> str:
    """Where the run's other checkpoint loads: ``'; X/model.safetensors (epoch 7) loads:
    use --checkpoint model'``, else nothing."""
    other = "model" if stem == "best" else "best"
    try:
        params, meta = checkpoint.load(run, other)
        check_finite(params, checkpoint.weights_path(run, other))
    except checkpoint.CheckpointError:
        return ""
    return (
        f". {checkpoint.weights_path(run, other)} (epoch {meta.get('epoch')}) loads: use "
        f"--checkpoint {other}"
    )
