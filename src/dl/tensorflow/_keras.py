"""Which Keras ``tf.keras`` means in this process.

The book's code builds ``tf.keras.layers.RNN(..., time_major=True)``, which only the Keras 2
line (the ``tf-keras`` package) accepts. TensorFlow >= 2.16 resolves ``tf.keras`` on its first
use, from the ``TF_USE_LEGACY_KERAS`` variable; importing :mod:`dl.tensorflow` sets that
variable (unless the user already set it), so ``tf.keras`` is tf-keras from then on. If
``tf.keras`` was already used as Keras 3, it stays Keras 3 and :data:`LEGACY` is False.
"""

import importlib.util
import os

if importlib.util.find_spec("tf_keras") is None:
    raise ImportError(
        "dl.tensorflow needs the tf-keras package (the Keras 2 line the book's code uses); "
        "install it with: pip install 'dl-rnn[tensorflow]'")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import tensorflow as tf  # noqa: E402  (the variable must be set first)

keras = tf.keras
LEGACY: bool = keras.__name__.startswith("tf_keras")
