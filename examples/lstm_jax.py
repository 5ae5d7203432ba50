# The chapter in JAX: an LSTM from scratch and with dl.jax's LSTM layer, trained on
# The Time Machine with `from dl import jax as dl` (parameters as pytrees, explicit keys;
# the cell is a one-step function scanned over time, as JAX code is written).
import jax
import jax.numpy as jnp
from dl import jax as dl

batch_size, num_steps = 32, 35
train_iter, vocab = dl.load_data_time_machine(batch_size, num_steps)

def get_lstm_params(vocab_size, num_hiddens, key):
    num_inputs = num_outputs = vocab_size
    keys = iter(jax.random.split(key, 9))

    def normal(shape):
        return jax.random.normal(next(keys), shape) * 0.01

    def three():
        return (normal((num_inputs, num_hiddens)), normal((num_hiddens, num_hiddens)),
                jnp.zeros(num_hiddens))

    W_xi, W_hi, b_i = three()  # Input gate parameters
    W_xf, W_hf, b_f = three()  # Forget gate parameters
    W_xo, W_ho, b_o = three()  # Output gate parameters
    W_xc, W_hc, b_c = three()  # Candidate memory cell parameters
    W_hq = normal((num_hiddens, num_outputs))  # Output layer parameters
    b_q = jnp.zeros(num_outputs)
    return [W_xi, W_hi, b_i, W_xf, W_hf, b_f, W_xo, W_ho, b_o, W_xc, W_hc, b_c, W_hq, b_q]

def init_lstm_state(batch_size, num_hiddens):
    return (jnp.zeros((batch_size, num_hiddens)), jnp.zeros((batch_size, num_hiddens)))

def lstm(inputs, state, params):
    W_xi, W_hi, b_i, W_xf, W_hf, b_f, W_xo, W_ho, b_o, W_xc, W_hc, b_c, W_hq, b_q = params

    def step(state, X):  # one time step: the cell as a function, scanned over time below
        H, C = state
        I = jax.nn.sigmoid((X @ W_xi) + (H @ W_hi) + b_i)
        F = jax.nn.sigmoid((X @ W_xf) + (H @ W_hf) + b_f)
        O = jax.nn.sigmoid((X @ W_xo) + (H @ W_ho) + b_o)
        C_tilda = jnp.tanh((X @ W_xc) + (H @ W_hc) + b_c)
        C = F * C + I * C_tilda
        H = O * jnp.tanh(C)
        return (H, C), H

    (H, C), Hs = jax.lax.scan(step, state, inputs)  # Hs: (num_steps, batch, hidden)
    outputs = Hs.reshape(-1, Hs.shape[-1]) @ W_hq + b_q
    return outputs, (H, C)

vocab_size, num_hiddens, device = len(vocab), 256, dl.try_gpu()
num_epochs, lr = 500, 1
key_scratch, key_concise = jax.random.split(jax.random.PRNGKey(0))
model = dl.RNNModelScratch(len(vocab), num_hiddens, key_scratch, get_lstm_params,
                           init_lstm_state, lstm)
dl.train_dl(model, train_iter, vocab, lr, num_epochs, device)

lstm_layer = dl.LSTM(vocab_size, num_hiddens)
model = dl.RNNModel(lstm_layer, len(vocab), key_concise)
dl.train_dl(model, train_iter, vocab, lr, num_epochs, device)
