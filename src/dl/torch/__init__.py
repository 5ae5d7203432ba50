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
  against ``ops`` for every backend's scratch model; the book-style step in
  :mod:`dl.scratch_cells`, which ``cells.py`` binds to torch; a ``LayersModel.GATE_ORDER``
  entry where a torch layer computes it)
  plus its NumPy reference, with backward, in :mod:`dl.reference`, which the tests hold
  every implementation to.
- A new book name: :mod:`dl.book` (its ``__all__`` where it is framework-free; else the
  name list of the module that defines it, here ``book``, ``cells`` or ``seq2seq``).
- A new backend: a sibling package with the same contract, ``model.trainer(OptimizerConfig,
  clip)`` giving a :class:`dl.train.Trainer` with ``optimizer_state`` and
  ``load_optimizer_state``, and ``Forecaster.make_step``; ``tests/test_engine.py`` checks it.
"""

from dl.book import *  # the framework-free names (dl.book.__all__)
from dl.plotting import lazy_plt
from dl.torch.book import *  # dl.book.TENSOR_NAMES
from dl.torch.cells import *  # dl.book.CELL_NAMES
from dl.torch.engine import TorchTrainer, grad_clipping
from dl.torch.models import RNNModel, RNNModelScratch
from dl.torch.seq2seq import *  # dl.book.SEQ2SEQ_NAMES
from dl.torch.training import predict_dl, sgd, train_dl, train_epoch_dl, try_gpu

train_ch8, train_epoch_ch8, predict_ch8 = train_dl, train_epoch_dl, predict_dl

__getattr__ = lazy_plt(__name__)  # dl.torch.plt: matplotlib.pyplot, imported on first use
