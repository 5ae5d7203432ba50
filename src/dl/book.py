"""The book's names that every backend package (``dl.torch``, ``dl.tensorflow``, ``dl.jax``)
exports: the framework-free ones, defined here once (``__all__``: text and minibatch data, the
data hub, machine translation data, metrics, plots, progress, :class:`~dl.train.DivergedError`),
and the lists of those each backend defines in its own modules (their ``__all__``), so the
packages re-export them by ``import *``. Importing this module imports no framework and no
matplotlib."""

from dl.data.batches import seq_data_iter_random, seq_data_iter_sequential
from dl.data.hub import DATA_HUB, DATA_URL, download, download_extract
from dl.data.nmt import preprocess_nmt, read_data_nmt, tokenize_nmt, truncate_pad
from dl.data.text import Vocab, load_corpus_time_machine, read_time_machine, tokenize
from dl.metrics import bleu, perplexity
from dl.plotting import plot, set_axes, set_figsize, show_list_len_pair_hist, use_svg_display
from dl.progress import Accumulator, Animator, Timer
from dl.train import DivergedError

__all__ = [
    "DATA_HUB",
    "DATA_URL",
    "Accumulator",
    "Animator",
    "DivergedError",
    "Timer",
    "Vocab",
    "bleu",
    "download",
    "download_extract",
    "load_corpus_time_machine",
    "perplexity",
    "plot",
    "preprocess_nmt",
    "read_data_nmt",
    "read_time_machine",
    "seq_data_iter_random",
    "seq_data_iter_sequential",
    "set_axes",
    "set_figsize",
    "show_list_len_pair_hist",
    "tokenize",
    "tokenize_nmt",
    "truncate_pad",
    "use_svg_display",
]

# each backend's cells module: the book's scratch RNN, GRU and LSTM
CELL_NAMES = (
    "CELLS",
    "get_gru_params",
    "get_lstm_params",
    "get_rnn_params",
    "gru",
    "init_gru_state",
    "init_lstm_state",
    "init_rnn_state",
    "lstm",
    "rnn",
)
# the seq2seq modules of PyTorch and TensorFlow (the book's 9.6-9.7; JAX's differs)
SEQ2SEQ_NAMES = (
    "Decoder",
    "Encoder",
    "EncoderDecoder",
    "MaskedSoftmaxCELoss",
    "Seq2SeqDecoder",
    "Seq2SeqEncoder",
    "build_array_nmt",
    "load_data_nmt",
    "predict_seq2seq",
    "sequence_mask",
    "train_seq2seq",
)
# the book modules of PyTorch and TensorFlow: d2l's tensor aliases and small helpers
TENSOR_NAMES = (
    "abs",
    "arange",
    "argmax",
    "astype",
    "concat",
    "cos",
    "cosh",
    "evaluate_loss",
    "exp",
    "eye",
    "float32",
    "int32",
    "linreg",
    "linspace",
    "load_array",
    "log",
    "matmul",
    "meshgrid",
    "normal",
    "numpy",
    "ones",
    "rand",
    "reduce_mean",
    "reduce_sum",
    "reshape",
    "sin",
    "sinh",
    "size",
    "squared_loss",
    "stack",
    "synthetic_data",
    "tanh",
    "tensor",
    "transpose",
    "zeros",
)
