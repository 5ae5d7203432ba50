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
  scratch version of it into :mod:`dl.scratch_cells`, which ``cells`` binds to TensorFlow.
- A new book name: :mod:`dl.book` (its ``__all__`` where it is framework-free; else the
  name list of the module that defines it, here ``book``, ``cells`` or ``seq2seq``).
- A new backend is a sibling package with the same modules, an engine of its framework's own
  optimizers, and a line in :mod:`dl.cli.backends`.
"""

from dl.book import *  # the framework-free names (dl.book.__all__)
from dl.data.batches import SeqDataLoader, load_data_time_machine
from dl.plotting import lazy_plt
from dl.tensorflow._keras import LEGACY as KERAS_IS_TF_KERAS  # noqa: F401  (sets tf.keras first)
from dl.tensorflow.book import *  # dl.book.TENSOR_NAMES
from dl.tensorflow.cells import *  # dl.book.CELL_NAMES
from dl.tensorflow.engine import TFTrainer, grad_clipping
from dl.tensorflow.models import RNNModel, RNNModelScratch
from dl.tensorflow.seq2seq import *  # dl.book.SEQ2SEQ_NAMES
from dl.tensorflow.training import Predictor, predict_dl, train_dl, train_epoch_dl, try_gpu

train_ch8, train_epoch_ch8, predict_ch8 = train_dl, train_epoch_dl, predict_dl

__getattr__ = lazy_plt(__name__)  # dl.tensorflow.plt: matplotlib.pyplot, imported on first use
