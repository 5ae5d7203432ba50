"""The book's two language models in JAX style: parameters are pytrees held by the model and
passed explicitly to the pure ``apply(params, X, state)``; randomness comes from a PRNG key.
"""

import jax
import jax.numpy as jnp

from dl.jax.cells import zero_state


class RNNModelScratch:
    """A recurrent language model from scratch: ``forward_fn(inputs, state, params)``."""

    def __init__(self, vocab_size, num_hiddens, key, get_params, init_state, forward_fn):
        self.vocab_size, self.num_hiddens = vocab_size, num_hiddens
        self.params = get_params(vocab_size, num_hiddens, key)
        self.init_state, self.forward_fn = init_state, forward_fn

    def apply(self, params, X, state):
        """``X: (batch, num_steps) int`` -> ``(logits: (num_steps * batch, vocab), state)``."""
        inputs = jax.nn.one_hot(X.T, self.vocab_size, dtype=jnp.float32)
        return self.forward_fn(inputs, state, params)

    def __call__(self, X, state):
        return self.apply(self.params, X, state)

    def begin_state(self, batch_size, *args, **kwargs):
        return self.init_state(batch_size, self.num_hiddens)


class _Recurrent:
    """A recurrent layer with fused gate weights ``W_x: (inputs, G*H)``, ``W_h: (H, G*H)``,
    ``b: (G*H,)`` (G gates, in the order of the book's cells), scanned over time."""

    gates, states = 1, 1  # gate blocks in the fused weights; arrays of state

    def __init__(self, num_inputs, num_hiddens):
        self.num_inputs, self.num_hiddens = num_inputs, num_hiddens

    def init(self, key):
        """Uniform(+-1/sqrt(H)) weights and biases, as PyTorch initialises its RNN layers."""
        width, bound = self.gates * self.num_hiddens, self.num_hiddens**-0.5
        k_x, k_h, k_b = jax.random.split(key, 3)
        uniform = lambda k, shape: jax.random.uniform(k, shape, minval=-bound, maxval=bound)
        return {
            "W_x": uniform(k_x, (self.num_inputs, width)),
            "W_h": uniform(k_h, (self.num_hiddens, width)),
            "b": uniform(k_b, (width,)),
        }

    def begin_state(self, batch_size):
        return zero_state(batch_size, self.num_hiddens, self.states)

    def apply(self, params, inputs, state):
        """``inputs: (num_steps, batch, num_inputs)`` -> ``(H: (num_steps, batch, H), state)``."""
        X_proj = inputs @ params["W_x"] + params["b"]  # all time steps in one product

        def body(state, x_proj):
            state = self.step(params["W_h"], x_proj, state)
            return state, state[0]

        state, Hs = jax.lax.scan(body, tuple(state), X_proj)
        return Hs, state


class RNN(_Recurrent):
    """Vanilla RNN layer: ``H = tanh(X W_x + H W_h + b)``."""

    def step(self, W_h, x, state):
        return (jnp.tanh(x + state[0] @ W_h),)


class GRU(_Recurrent):
    """GRU layer as the book's cell (reset gate before ``W_h``); gates z, r, candidate."""

    gates = 3

    def step(self, W_h, x, state):
        (H,) = state
        W_hz, W_hr, W_hh = jnp.split(W_h, 3, axis=1)
        x_z, x_r, x_h = jnp.split(x, 3, axis=-1)
        Z = jax.nn.sigmoid(x_z + H @ W_hz)
        R = jax.nn.sigmoid(x_r + H @ W_hr)
        return (Z * H + (1 - Z) * jnp.tanh(x_h + (R * H) @ W_hh),)


class LSTM(_Recurrent):
    """LSTM layer as the book's cell; gates i, f, o, candidate; state ``(H, C)``."""

    gates, states = 4, 2

    def step(self, W_h, x, state):
        H, C = state
        i, f, o, c = jnp.split(x + H @ W_h, 4, axis=-1)
        C = jax.nn.sigmoid(f) * C + jax.nn.sigmoid(i) * jnp.tanh(c)
        return (jax.nn.sigmoid(o) * jnp.tanh(C), C)


class RNNModel:
    """A recurrent layer (:class:`RNN`, :class:`GRU`, :class:`LSTM`) plus a dense output layer;
    ``params = {'rnn': ..., 'dense': {'W': (H, vocab), 'b': (vocab,)}}``."""

    def __init__(self, rnn_layer, vocab_size, key):
        if not isinstance(rnn_layer, _Recurrent):
            raise TypeError(f"RNNModel takes dl.jax.RNN, GRU or LSTM layers, got {rnn_layer!r}")
        self.rnn, self.vocab_size = rnn_layer, vocab_size
        k_rnn, k_dense = jax.random.split(key)
        bound = rnn_layer.num_hiddens**-0.5
        self.params = {
            "rnn": rnn_layer.init(k_rnn),
            "dense": {
                "W": jax.random.uniform(
                    k_dense, (rnn_layer.num_hiddens, vocab_size), minval=-bound, maxval=bound
                ),
                "b": jnp.zeros(vocab_size),
            },
        }

    def apply(self, params, X, state):
        """``X: (batch, num_steps) int`` -> ``(logits: (num_steps * batch, vocab), state)``."""
        inputs = jax.nn.one_hot(X.T, self.vocab_size, dtype=jnp.float32)
        Hs, state = self.rnn.apply(params["rnn"], inputs, state)
        dense = params["dense"]
        return Hs.reshape(-1, Hs.shape[-1]) @ dense["W"] + dense["b"], state

    def __call__(self, X, state):
        return self.apply(self.params, X, state)

    def begin_state(self, batch_size, *args, **kwargs):
        return self.rnn.begin_state(batch_size)
