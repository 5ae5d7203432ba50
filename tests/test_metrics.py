"""Tests for dl.metrics."""

import math

import pytest

from dl.metrics import perplexity


@pytest.mark.parametrize('loss_sum, num_tokens, expected', [
    (0.0, 5, 1.0),                       # a perfect model
    (10 * math.log(28), 10, 28.0),        # uniform over the 28 characters of the book
    (3.0, 2, math.exp(1.5)),
    (35 * math.log(2), 35, 2.0),
    (2.5, 2.5, math.e),                   # float token counts (weighted sums) are fine
    (-1.0, 1, math.exp(-1.0)),
])
def test_perplexity_known_values(loss_sum, num_tokens, expected):
    assert perplexity(loss_sum, num_tokens) == pytest.approx(expected, rel=1e-12)


def test_perplexity_returns_a_float():
    assert isinstance(perplexity(1, 1), float)


@pytest.mark.parametrize('num_tokens', [0, 0.0, -1, -100])
def test_perplexity_without_tokens_raises(num_tokens):
    with pytest.raises(ValueError, match='at least one token') as info:
        perplexity(1.0, num_tokens)
    assert f'num_tokens={num_tokens}' in str(info.value)


def test_perplexity_of_a_huge_finite_loss_is_inf():
    assert perplexity(1e6, 1) == math.inf
