"""The book's PyTorch API (d2l 0.17 names) on the shared ``dl`` core.

    import torch
    from dl import torch as dl

Where things go:

- ``engine.py``: the one training step (forward, loss, backward, clipping, update) and the
  optimizers, for the book's models, ``dl train`` and ``dl forecast`` alike. A new optimizer
  is its :mod:`dl.optim` entry plus one entry of ``engine.OPTIMIZERS`` (its ``torch.optim``
  class, arguments and state keys); nothing else changes.
- ``cells.py``, ``models.py``, ``training.py``: the book's scratch cells, its two language
  models, and its ``train_ch8``, ``train_epoch_ch8`` and ``predict_ch8`` on the engine.
- ``lm.py``: ``dl train``'s models on :mod:`dl.lm`'s framework-neutral forward pass, and
  ``CanonicalModule`` (parameters by canonical name, device, dropout, zero state), which the
  forecaster (``forecast.py``) shares.
- A new cell: one step function per implementation (its step in :mod:`dl.lm`, written once
  against ``ops`` for every backend's scratch model; the book-style function and ``CELLS``
  entry in ``cells.py``; a ``LayersModel.GATE_ORDER`` entry where a torch layer computes it)
  plus its NumPy reference, with backward, in :mod:`dl.reference`, which the tests hold
  every implementation to.
- A new backend: a sibling package with the same contract, ``model.trainer(OptimizerConfig,
  clip)`` giving a :class:`dl.train.Trainer` with ``optimizer_state`` and
  ``load_optimizer_state``, and ``Forecaster.make_step``; ``tests/test_engine.py`` checks it.
"""

from dl.data.batches import seq_data_iter_random, seq_data_iter_sequential

# machine translation, encoder-decoder, sequence to sequence (the book's 9.5-9.7)
from dl.data.hub import DATA_HUB, DATA_URL, download, download_extract
from dl.data.nmt import preprocess_nmt, read_data_nmt, tokenize_nmt, truncate_pad
from dl.data.text import Vocab, load_corpus_time_machine, read_time_machine, tokenize
from dl.metrics import bleu, perplexity
from dl.plotting import (
    lazy_plt,
    plot,
    set_axes,
    set_figsize,
    show_list_len_pair_hist,
    use_svg_display,
)
from dl.progress import Accumulator, Animator, Timer
from dl.torch.book import (
    SeqDataLoader,
    abs,
    arange,
    argmax,
    astype,
    concat,
    cos,
    cosh,
    evaluate_loss,
    exp,
    eye,
    float32,
    int32,
    linreg,
    linspace,
    load_array,
    load_data_time_machine,
    log,
    matmul,
    meshgrid,
    normal,
    numpy,
    ones,
    rand,
    reduce_mean,
    reduce_sum,
    reshape,
    sin,
    sinh,
    size,
    squared_loss,
    stack,
    synthetic_data,
    tanh,
    tensor,
    to,
    transpose,
    zeros,
)
from dl.torch.cells import (
    CELLS,
    get_gru_params,
    get_lstm_params,
    get_rnn_params,
    gru,
    init_gru_state,
    init_lstm_state,
    init_rnn_state,
    lstm,
    rnn,
)
from dl.torch.engine import TorchTrainer, grad_clipping
from dl.torch.models import RNNModel, RNNModelScratch
from dl.torch.seq2seq import (
    Decoder,
    Encoder,
    EncoderDecoder,
    MaskedSoftmaxCELoss,
    Seq2SeqDecoder,
    Seq2SeqEncoder,
    build_array_nmt,
    load_data_nmt,
    predict_seq2seq,
    sequence_mask,
    train_seq2seq,
)
from dl.torch.training import predict_dl, sgd, train_dl, train_epoch_dl, try_gpu
from dl.train import DivergedError

train_ch8, train_epoch_ch8, predict_ch8 = train_dl, train_epoch_dl, predict_dl

__getattr__ = lazy_plt(__name__)  # dl.torch.plt: matplotlib.pyplot, imported on first use
