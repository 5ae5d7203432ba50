"""Framework-neutral data: downloads, text, vocabularies and minibatches (NumPy only)."""
