"""Sequence to sequence learning (the book's section 9.7) without a framework: the canonical
parameter names every backend loads and saves, the masked loss in NumPy, and the training
loop the backends' ``train_seq2seq`` share.

The model is the book's: an embedding and stacked GRUs (PyTorch's and Keras' GRU, the reset
gate applied after the recurrent product) for the encoder; for the decoder the same, its
input the embedded token joined with the encoder's last-layer state, then a dense layer.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from dl.data.nmt import truncate_pad
from dl.progress import Animator, Timer
from dl.train import DivergedError
from dl.validate import check_positive

GATES = ("z", "r", "h")  # update gate, reset gate, candidate


def param_shapes(
    src_vocab_size: int, tgt_vocab_size: int, embed_size: int, num_hiddens: int, num_layers: int
) -> dict[str, tuple[int, ...]]:
    """Canonical names and shapes: ``encoder.embedding: (V_src, E)``; per GRU layer ``k`` of
    ``encoder`` and ``decoder``, ``gru{k}.W_x{g}: (inputs, H)``, ``W_h{g}: (H, H)``,
    ``b_x{g}, b_h{g}: (H,)`` for the gates ``g`` in :data:`GATES`; ``decoder.embedding:
    (V_tgt, E)``, ``decoder.W_hq: (H, V_tgt)``, ``decoder.b_q: (V_tgt,)``. The decoder's first
    layer takes ``E + H`` inputs (the token and the context)."""
    shapes = {}
    for part, vocab_size, inputs in (
        ("encoder", src_vocab_size, embed_size),
        ("decoder", tgt_vocab_size, embed_size + num_hiddens),
    ):
        shapes[f"{part}.embedding"] = (vocab_size, embed_size)
        for layer in range(num_layers):
            prefix = f"{part}.gru{layer}"
            for g in GATES:
                shapes[f"{prefix}.W_x{g}"] = (inputs if layer == 0 else num_hiddens, num_hiddens)
                shapes[f"{prefix}.W_h{g}"] = (num_hiddens, num_hiddens)
                shapes[f"{prefix}.b_x{g}"] = (num_hiddens,)
                shapes[f"{prefix}.b_h{g}"] = (num_hiddens,)
    shapes["decoder.W_hq"] = (num_hiddens, tgt_vocab_size)
    shapes["decoder.b_q"] = (tgt_vocab_size,)
    return shapes


def join_gates(params: dict, prefix: str, kind: str, order=GATES) -> np.ndarray:
    """The gates' ``{prefix}.{kind}{g}`` side by side in ``order``: ``W: (inputs, 3H)``,
    ``b: (3H,)`` (``kind`` is ``W_x``, ``W_h``, ``b_x`` or ``b_h``)."""
    return np.concatenate([np.asarray(params[f"{prefix}.{kind}{g}"]) for g in order], axis=-1)


def split_gates(joined, prefix: str, kind: str, order=GATES) -> dict[str, np.ndarray]:
    """The inverse of :func:`join_gates`."""
    parts = np.split(np.asarray(joined), len(order), axis=-1)
    return {f"{prefix}.{kind}{g}": part for g, part in zip(order, parts)}


def masked_softmax_ce(logits, labels, valid_len) -> np.ndarray:
    """The book's ``MaskedSoftmaxCELoss`` in NumPy: ``logits: (B, T, V)``, ``labels: (B, T)``
    int, ``valid_len: (B,)`` -> ``(B,)``, each row's cross-entropy over its first
    ``valid_len`` steps summed and divided by ``T`` (all steps, as the book)."""
    logits = np.asarray(logits, dtype=np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    picked = np.take_along_axis(log_probs, np.asarray(labels)[..., None], axis=-1)[..., 0]
    mask = np.arange(logits.shape[1])[None, :] < np.asarray(valid_len)[:, None]
    return (-picked * mask).mean(axis=1)


class Seq2SeqTrainer(Protocol):
    """What a backend provides to :func:`fit`."""

    def train_step(self, X, X_valid_len, Y, Y_valid_len) -> None:
        """One update on a batch (``X, Y: (batch, num_steps)``); the loss and token count are
        added to running sums on the device."""

    def take_sums(self) -> tuple[float, int]:
        """``(loss_sum, num_tokens)`` since the last call (one host sync); resets both."""


def fit(
    trainer: Seq2SeqTrainer,
    data_iter,
    num_epochs: int,
    device_name: str,
    animator: Animator | None = None,
) -> Animator:
    """The book's ``train_seq2seq`` loop: a point of loss per token every 10 epochs, then
    ``loss L, S tokens/sec on DEVICE`` for the last epoch. Returns the Animator."""
    check_positive("num_epochs", num_epochs, integer=True)
    animator = animator or Animator(xlabel="epoch", ylabel="loss", xlim=[10, num_epochs])
    for epoch in range(1, num_epochs + 1):
        timer = Timer()
        for batch in data_iter:
            trainer.train_step(*batch)
        loss_sum, num_tokens = trainer.take_sums()
        seconds = timer.stop()
        if num_tokens == 0:
            raise ValueError("data_iter yielded no batches (or only empty target sequences)")
        if not math.isfinite(loss_sum):
            raise DivergedError(
                f"training diverged in epoch {epoch}: the loss became "
                f"{loss_sum}; train again with a smaller learning rate"
            )
        if epoch % 10 == 0:
            animator.add(epoch, (loss_sum / num_tokens,))
    print(
        f"loss {loss_sum / num_tokens:.3f}, {num_tokens / seconds:.1f} tokens/sec on {device_name}"
    )
    return animator


def translate(
    src_sentence: str,
    src_vocab,
    tgt_vocab,
    num_steps: int,
    begin: Callable[[list[int], int], Any],
    step: Callable[[int, Any], tuple[int, Any]],
    attention: Callable[[], Any] | None = None,
):
    """The book's greedy ``predict_seq2seq``: ``(translation, attention_weights)``.

    ``begin(src_ids, valid_len) -> state`` encodes the sentence's ids (``<eos>`` appended, cut
    or padded to ``num_steps``); ``step(token, state) -> (next_token, state)`` runs the decoder
    on one token and picks the likeliest. At most ``num_steps`` tokens, up to ``<eos>``.
    ``attention()``, when given, is called after every step and its results returned.
    """
    src_tokens = src_vocab[src_sentence.lower().split(" ")] + [src_vocab["<eos>"]]
    state = begin(truncate_pad(src_tokens, num_steps, src_vocab["<pad>"]), len(src_tokens))
    token, output_seq, attention_weight_seq = tgt_vocab["<bos>"], [], []
    for _ in range(num_steps):
        token, state = step(token, state)
        if attention is not None:
            attention_weight_seq.append(attention())
        if token == tgt_vocab["<eos>"]:
            break
        output_seq.append(token)
    return " ".join(tgt_vocab.to_tokens(output_seq)), attention_weight_seq
