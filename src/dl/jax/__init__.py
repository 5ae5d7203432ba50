"""The chapter's API in JAX style, on the shared ``dl`` core.

    import jax
    from dl import jax as dl

Parameters are pytrees (lists in the canonical order for scratch cells, dicts for layers),
models keep them in ``.params`` and expose a pure ``apply(params, X, state)``; randomness
comes from explicit PRNG keys. The training step is one ``jax.jit``; library cells and layers
scan over time with ``jax.lax.scan``, a user's Python loop is unrolled when compiled.

Design: models define a pure loss; ``engine.Engine`` alone makes the jitted step (gradients,
clipping, the optax update, sharding) and owns the optimizer state, for the book API
(``training``), ``dl train`` (``lm``) and ``dl forecast`` (``forecast``). Where things go:

- a cell: the book's form in :mod:`dl.scratch_cells` (bound to JAX in ``cells``), a fused
  layer in ``models`` (and
  ``lm.LayersModel.LAYERS``); the command line's scratch model runs :func:`dl.lm.forward`;
- an optimizer: its name and formula in :mod:`dl.optim`, then one entry of
  ``engine.OPTIMIZERS`` (the optax transformation; ``SLOT_FIELDS`` maps its state's fields);
- a book name: :mod:`dl.book`'s ``__all__`` where it is framework-free (``cells``' list:
  ``dl.book.CELL_NAMES``); JAX's own names are imported below;
- a backend: a package beside this one with the same split (``engine``, ``training``, ``lm``,
  ``forecast``) over :mod:`dl.train`, :mod:`dl.lm` and :mod:`dl.forecast`.

| book (PyTorch edition) | here |
| --- | --- |
| ``RNNModelScratch(vocab, hidden, device, get_params, init_state, forward_fn)`` | ``RNNModelScratch(vocab, hidden, key, get_params, init_state, forward_fn)`` |
| ``get_params(vocab, hidden, device)`` | ``get_params(vocab, hidden, key)`` |
| ``init_state(batch, hidden, device)`` | ``init_state(batch, hidden)`` |
| ``RNNModel(nn.LSTM(vocab, hidden), vocab)`` | ``RNNModel(LSTM(vocab, hidden), vocab, key)`` |
| ``train_ch8(net, train_iter, vocab, lr, num_epochs, device)`` | ``train_dl(net, train_iter, vocab, lr, num_epochs, device=None)`` |
| ``predict_ch8(prefix, num_preds, net, vocab, device)`` | ``predict_dl(prefix, num_preds, net, vocab, device=None)`` |
| ``grad_clipping(net, theta)`` (in place) | ``grad_clipping(grads, theta)`` -> clipped grads (pure) |
| ``EncoderDecoder(encoder, decoder)``, ``MaskedSoftmaxCELoss()`` | ``EncoderDecoder(encoder, decoder, key)``, ``masked_softmax_ce`` |

Sequence to sequence: :mod:`dl.jax.seq2seq` (``build_array_nmt`` gives NumPy arrays).
"""

from dl.book import *  # the framework-free names (dl.book.__all__)
from dl.data.batches import SeqDataLoader, load_data_time_machine
from dl.data.nmt import build_array_nmt
from dl.jax.book import ArrayLoader, load_array
from dl.jax.cells import *  # dl.book.CELL_NAMES
from dl.jax.models import GRU, LSTM, RNN, RNNModel, RNNModelScratch
from dl.jax.seq2seq import (
    EncoderDecoder,
    Seq2SeqDecoder,
    Seq2SeqEncoder,
    load_data_nmt,
    masked_softmax_ce,
    predict_seq2seq,
    sequence_mask,
    train_seq2seq,
)
from dl.jax.training import (
    JaxTrainer,
    Predictor,
    grad_clipping,
    predict_dl,
    token_loss_sum,
    train_dl,
    train_epoch_dl,
    try_gpu,
)
from dl.plotting import lazy_plt

train_ch8, train_epoch_ch8, predict_ch8 = train_dl, train_epoch_dl, predict_dl

__getattr__ = lazy_plt(__name__)  # dl.jax.plt: matplotlib.pyplot, imported on first use
