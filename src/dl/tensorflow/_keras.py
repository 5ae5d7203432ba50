"""Which Keras ``tf.keras`` means in this process.

The book's code builds ``tf.keras.layers.RNN(..., time_major=True)``, which only the Keras 2
line (the ``tf-keras`` package) accepts. TensorFlow >= 2.16 resolves ``tf.keras`` on its first
use, from the ``TF_USE_LEGACY_KERAS`` variable; importing :mod:`dl.tensorflow` sets that
variable (unless the user already set it), so ``tf.keras`` is tf-keras from then on. If
``tf.keras`` was already used as Keras 3, it stays Keras 3 and :data:`LEGACY` is False.

TensorFlow's start-up log lines (oneDNN, CUDA drivers, CPU instructions) are silenced: its
C++ runtime writes them to the standard error before any log level applies, so the import
runs with file descriptor 2 sent to /dev/null, unless ``TF_CPP_MIN_LOG_LEVEL`` is ``0``.
"""

import contextlib
import importlib.util
import os
import sys

if importlib.util.find_spec("tf_keras") is None:
    raise ImportError(
        "dl.tensorflow needs the tf-keras package (the Keras 2 line the book's code uses); "
        "install it with: pip install 'dl-rnn[tensorflow]'"
    )
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # warnings and errors only, once it applies


@contextlib.contextmanager
def _quiet_stderr():
    """File descriptor 2 to /dev/null while the block runs (Python's exceptions are raised
    after it, so they still show)."""
    if os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0":
        yield
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


with _quiet_stderr():
    import absl.logging
    import tensorflow as tf  # (the variables must be set first)

    tf.config.list_physical_devices("GPU")  # the drivers are probed (and log) here, once

absl.logging.set_verbosity(absl.logging.ERROR)

keras = tf.keras
LEGACY: bool = keras.__name__.startswith("tf_keras")
