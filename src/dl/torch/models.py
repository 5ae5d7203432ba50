"""The book's two language models in PyTorch: around a scratch cell, around ``nn.RNN/GRU/LSTM``."""

import torch
from torch import nn
from torch.nn import functional as F


class RNNModelScratch:
    """A recurrent language model from scratch: ``forward_fn(inputs, state, params)``."""

    def __init__(self, vocab_size, num_hiddens, device, get_params, init_state, forward_fn):
        self.vocab_size, self.num_hiddens = vocab_size, num_hiddens
        self.params = get_params(vocab_size, num_hiddens, device)
        self.init_state, self.forward_fn = init_state, forward_fn

    def __call__(self, X, state):
        """``X: (batch, num_steps) int`` -> ``(logits: (num_steps * batch, vocab), state)``."""
        X = F.one_hot(X.T.long(), self.vocab_size).type(torch.float32)
        return self.forward_fn(X, state, self.params)

    def begin_state(self, batch_size, device):
        return self.init_state(batch_size, self.num_hiddens, device)

    def parameters(self):
        return iter(self.params)


class RNNModel(nn.Module):
    """An ``nn.RNN``, ``nn.GRU`` or ``nn.LSTM`` (time-major, any number of layers, one or two
    directions) plus a linear output layer."""

    def __init__(self, rnn_layer, vocab_size, **kwargs):
        super().__init__(**kwargs)
        if getattr(rnn_layer, "batch_first", False):
            raise ValueError(
                "RNNModel feeds inputs time-major; build the layer with batch_first=False"
            )
        self.rnn = rnn_layer
        self.vocab_size = vocab_size
        self.num_hiddens = self.rnn.hidden_size
        # an LSTM with proj_size > 0 outputs (and carries as H) projections of that size
        self.num_outputs = getattr(self.rnn, "proj_size", 0) or self.num_hiddens
        self.num_directions = 2 if self.rnn.bidirectional else 1
        self.linear = nn.Linear(self.num_outputs * self.num_directions, self.vocab_size)

    def forward(self, inputs, state):
        """``inputs: (batch, num_steps) int`` -> ``(logits: (num_steps * batch, vocab), state)``."""
        X = F.one_hot(inputs.T.long(), self.vocab_size).to(self.linear.weight.dtype)
        Y, state = self.rnn(X, state)
        return self.linear(Y.reshape((-1, Y.shape[-1]))), state

    def begin_state(self, device, batch_size=1):
        """Zeros ``(num_directions * num_layers, batch_size, num_hiddens)``; ``(H, C)`` for an
        LSTM, whose ``H`` has ``proj_size`` columns when it projects."""
        layers = self.num_directions * self.rnn.num_layers
        H = torch.zeros((layers, batch_size, self.num_outputs), device=device)
        if isinstance(self.rnn, nn.LSTM):
            return (H, torch.zeros((layers, batch_size, self.num_hiddens), device=device))
        return H
