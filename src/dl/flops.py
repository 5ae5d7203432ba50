"""Parameters and analytic FLOPs per token of the language models of :mod:`dl.lm` (exercise 3).

Plain integer arithmetic on an :class:`dl.lm.LMConfig`; no arrays, no framework.

Letters: V = vocab_size, H = num_hiddens, L = num_layers, G = weight matrices per input of a
layer (gates): 1 for the RNN, 3 for the GRU (z, r, candidate), 4 for the LSTM (i, f, o, c).
D is a layer's input width: V for the first layer, H above it.

Conventions:

- One FLOP is one scalar addition, multiplication or nonlinearity (sigmoid, tanh, exp), so a
  multiply-add is 2 FLOPs and a row of n numbers times an (n, m) matrix is 2nm FLOPs.
- Counts are per token: a batch of B x T tokens costs B * T times as much, whatever B and T.
- The first layer's input is one-hot. The book multiplies it by ``W_x: (V, G*H)`` as a dense
  product, 2*V*G*H FLOPs (``input_product='dense'``); :mod:`dl.lm` looks the row up instead,
  0 FLOPs and G*H numbers read (``'lookup'``, the default since it is what dl runs). Either
  way the gate biases add G*H FLOPs.
- Inference is one forward pass, softmax included (generation draws from it).
- Training is ``TRAINING_FACTOR = 3`` forward passes: the backward pass of a matrix product
  makes two products of the same size (the gradients of both factors), and the elementwise
  work is counted the same way. The optimizer's work per batch (global-norm clipping and the
  SGD update, about 5 FLOPs per parameter) is left out: spread over the B*T = 1,120 tokens of
  the book's batch it is under 0.1% of the seed LSTM's training FLOPs.
- Dropout's mask multiply (training, between layers) is left out: H FLOPs per layer.

Per token and layer, a forward pass costs::

    part         RNN            GRU             LSTM
    input        2*D*H + H      2*D*3H + 3H     2*D*4H + 4H    (first layer by lookup: G*H)
    recurrent    2*H*H          2*H*3H          2*H*4H         (2*G*H*H: LSTM = 4/3 GRU = 4 RNN)
    elementwise  2H             11H             13H            (12H without the output tanh)

Elementwise, per hidden unit: RNN: add the two products, tanh (2). GRU: add the products of
z, r and the candidate (3), two sigmoids, R * H, tanh, then Z * H + (1 - Z) * H_tilda (4):
11. LSTM: add the products of i, f, o, c (4), three sigmoids, tanh of the candidate,
F * C + I * C_tilda (3), tanh(C), O * (...): 13.

Once per token: the output layer ``H @ W_hq + b_q``, 2*H*V + V; the softmax, 3V (the
exponentials, their sum, the division; the same count stands for cross-entropy's log-sum-exp).

So the matrix products of the forward pass cost 2 FLOPs per weight (dense view), the usual
"2N forward, 6N training" rule.
"""

from __future__ import annotations

import dataclasses

from dl.errors import InputError
from dl.lm import GATES, LMConfig

INPUT_PRODUCTS = ("lookup", "dense")
TRAINING_FACTOR = 3  # training FLOPs = 3 x forward FLOPs (forward, then twice that backward)
ELEMENTWISE_PER_UNIT = {"rnn": 2, "gru": 11, "lstm": 13}  # with the LSTM's output tanh


@dataclasses.dataclass(frozen=True)
class Flops:
    """FLOPs per token of one forward pass, by part (all layers summed)."""

    input: int  # input products (first layer: lookup or dense) and gate biases
    recurrent: int  # H_{t-1} @ W_h products
    elementwise: int  # adding the products, gate nonlinearities, state updates
    output: int  # H @ W_hq + b_q
    softmax: int  # over the V outputs

    @property
    def total(self) -> int:
        return self.input + self.recurrent + self.elementwise + self.output + self.softmax


def num_params(config: LMConfig) -> int:
    """Sum over layers of ``G * (D*H + H*H + H)``, plus ``H*V + V`` for the output layer."""
    V, H, G = config.vocab_size, config.num_hiddens, len(GATES[config.cell])
    layers = sum(G * (D * H + H * H + H) for D in _input_widths(config))
    return layers + H * V + V


def forward_flops(config: LMConfig, input_product: str = "lookup") -> Flops:
    """FLOPs per token of one forward pass of ``config``, by part (see the module's table).

    ``input_product``: ``'lookup'`` (the first layer's one-hot product as a row lookup, 0
    FLOPs, as :mod:`dl.lm` runs it) or ``'dense'`` (as a matrix product, 2*V*G*H FLOPs).
    """
    if input_product not in INPUT_PRODUCTS:
        raise InputError(
            f"input_product must be one of {', '.join(INPUT_PRODUCTS)}, got {input_product!r}"
        )
    V, H, L, G = config.vocab_size, config.num_hiddens, config.num_layers, len(GATES[config.cell])
    products = [2 * D * G * H for D in _input_widths(config)]
    if input_product == "lookup":
        products[0] = 0
    per_unit = ELEMENTWISE_PER_UNIT[config.cell] - (
        config.cell == "lstm" and not config.output_tanh
    )
    return Flops(
        input=sum(products) + L * G * H,
        recurrent=L * 2 * G * H * H,
        elementwise=L * per_unit * H,
        output=2 * H * V + V,
        softmax=3 * V,
    )


def inference_flops(config: LMConfig, input_product: str = "lookup") -> int:
    """FLOPs per generated or scored token: one forward pass."""
    return forward_flops(config, input_product).total


def training_flops(config: LMConfig, input_product: str = "lookup") -> int:
    """FLOPs per trained token: ``TRAINING_FACTOR`` (3) forward passes."""
    return TRAINING_FACTOR * forward_flops(config, input_product).total


def _input_widths(config: LMConfig) -> list[int]:
    """D per layer: V for the first, H above."""
    return [config.vocab_size] + [config.num_hiddens] * (config.num_layers - 1)
