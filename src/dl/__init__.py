"""dl: the recurrent-network toolkit of the book's LSTM chapter.

Importing ``dl`` imports no deep-learning framework; pick one with
``from dl import tensorflow as dl`` (the book's TensorFlow API).
"""

__version__ = "0.1.0"
