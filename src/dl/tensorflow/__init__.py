"""The book's TensorFlow API (d2l 0.17 names), on current TensorFlow and NumPy.

    import tensorflow as tf
    from dl import tensorflow as dl

Importing this module makes ``tf.keras`` mean tf-keras (the Keras 2 line, which accepts the
book's ``RNN(..., time_major=True)``) when ``tf.keras`` has not been used yet in the process:
it sets ``TF_USE_LEGACY_KERAS=1`` unless that variable is already set. If Keras 3 is already
active, ``RNNModel`` takes Keras 3 (batch-major) layers instead.

Where things go:

- ``cells``: the book's scratch cells (``get_*_params``, ``init_*_state``, the forward
  function); ``models``: the book's ``RNNModelScratch`` and ``RNNModel``; ``training``: the
  book's ``train_dl``, ``train_epoch_dl`` and ``predict_dl`` around :mod:`dl.train`'s loop.
- ``engine``: the one compiled training step and the optimizers. Everything that trains (the
  book's API, ``dl train``, ``dl forecast``) goes through ``engine.Engine``; a new optimizer is
  a line of ``engine.OPTIMIZERS`` (after its entry in :mod:`dl.optim`).
- ``lm``: ``dl train``'s models on canonical parameters (:mod:`dl.lm`; ``CanonicalModel`` holds
  devices, zero states and dropout once, for them and for ``forecast``'s forecaster). A new cell
  goes into :mod:`dl.lm` (and :mod:`dl.reference`), which every backend computes; the book's
  scratch version of it into ``cells``.
- A new backend is a sibling package with the same modules, an engine of its framework's own
  optimizers, and a line in :mod:`dl.cli.backends`.
"""

from dl.data.batches import (
    SeqDataLoader,
    load_data_time_machine,
    seq_data_iter_random,
    seq_data_iter_sequential,
)

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
from dl.tensorflow._keras import LEGACY as KERAS_IS_TF_KERAS  # noqa: F401  (sets tf.keras first)
from dl.tensorflow.book import (
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
    sgd,
    sin,
    sinh,
    size,
    squared_loss,
    stack,
    synthetic_data,
    tanh,
    tensor,
    transpose,
    zeros,
)
from dl.tensorflow.cells import (
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
from dl.tensorflow.engine import TFTrainer, grad_clipping
from dl.tensorflow.models import RNNModel, RNNModelScratch
from dl.tensorflow.seq2seq import (
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
from dl.tensorflow.training import Predictor, predict_dl, train_dl, train_epoch_dl, try_gpu
from dl.train import DivergedError

train_ch8, train_epoch_ch8, predict_ch8 = train_dl, train_epoch_dl, predict_dl

__getattr__ = lazy_plt(__name__)  # dl.tensorflow.plt: matplotlib.pyplot, imported on first use
