"""Metrics shared by every backend."""

import math


def perplexity(loss_sum: float, num_tokens: float) -> float:
    """exp of the mean cross-entropy (nats) over ``num_tokens`` tokens; ``inf`` past float range."""
    if num_tokens <= 0:
        raise ValueError(f"perplexity needs at least one token, got num_tokens={num_tokens}")
    mean = loss_sum / num_tokens
    return math.exp(mean) if mean < 709 else math.inf
