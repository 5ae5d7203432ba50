"""The TensorFlow backend's one training engine, for the book's ``train_dl``, ``dl train`` and
``dl forecast``: :class:`Engine` owns the optimizer (Keras', from a
:class:`dl.optim.OptimizerConfig` through :data:`OPTIMIZERS`, or the book's own instance) and
turns a replica's loss into one ``tf.function`` step (forward, loss, gradients summed over the
replicas of a ``tf.distribute`` strategy, global-norm clipping, update, a loss sum kept on the
device). :class:`TFTrainer` is the engine of a language model, with an eager fallback.
"""

from __future__ import annotations

import contextlib
import functools
import warnings

import numpy as np
import tensorflow as tf

from dl import optim
from dl.errors import InputError
from dl.optim import OptimizerConfig
from dl.tensorflow._keras import LEGACY, keras
from dl.tensorflow.models import GRAPH_INPUT_KINDS, RNNModelScratch

# tf-keras' Adam can add epsilon after the bias correction, as dl.optim's formula does; Keras
# 3's adds it before, so there weights with gradients near 1e-6 and below take smaller early
# steps (several times smaller: Adam steps all gradients alike, whatever their size)
_EXACT_EPSILON = {"adaptive_epsilon": True} if LEGACY else {}


def _adam(config: OptimizerConfig, weight_decay=None):
    return keras.optimizers.Adam(
        config.lr,
        beta_1=config.beta1,
        beta_2=config.beta2,
        epsilon=config.eps,
        weight_decay=weight_decay,
        **_EXACT_EPSILON,
    )


class _RMSprop(keras.optimizers.RMSprop):
    """Keras' RMSprop (uncentred, no momentum) with epsilon added to the root of the mean
    square: dl.optim's formula (PyTorch's, char-rnn's). Keras adds it under the root, and no
    value there does the same: with eps² under it, steps of gradients below about 1e-4 still
    differ by 1e-3 of their size and more. Only the update of dense gradients (the engine's
    only kind) is replaced; no Keras option gives this one."""

    def update_step(self, gradient, variable, *learning_rate):  # Keras 3 passes the rate
        lr = tf.cast(learning_rate[0] if learning_rate else self.learning_rate, variable.dtype)
        velocity = self._velocities[
            self._index_dict[self._var_key(variable)]
            if LEGACY
            else self._get_variable_index(variable)
        ]
        velocity.assign(self.rho * velocity + (1 - self.rho) * tf.square(gradient))
        variable.assign_sub(lr * gradient / (tf.sqrt(velocity) + self.epsilon))


# dl.optim's name -> the Keras optimizer computing its formula; a new optimizer is one entry
OPTIMIZERS = {
    "sgd": lambda c: keras.optimizers.SGD(c.lr, weight_decay=c.weight_decay or None),
    "adam": _adam,
    # Keras' AdamW is its Adam with the base optimizer's decoupled weight_decay, which Adam
    # takes itself (and, on tf-keras, with the exact epsilon that tf-keras' AdamW lacks)
    "adamw": lambda c: _adam(c, weight_decay=c.weight_decay),
    "rmsprop": lambda c: _RMSprop(
        c.lr, rho=c.rho, momentum=0.0, epsilon=c.eps, centered=False, name="RMSprop"
    ),
}
# dl.optim's slot -> the Keras optimizer's list of that state, one entry per variable
_SLOT_VARIABLES = {"m": "_momentums", "v": "_velocities"}


def mirrored(device: str, count: int) -> tf.distribute.MirroredStrategy:
    """A ``MirroredStrategy`` over ``count`` local devices of ``device``'s kind (``'/CPU:0'``,
    ``'/GPU:1'``), ``device`` the first; on a CPU, ``count`` logical CPUs are made first where
    TensorFlow has not started yet. InputError naming how many there are."""
    kind, index = device.strip("/").split(":")
    if kind == "CPU":
        cpu = tf.config.list_physical_devices("CPU")[0]
        try:
            configs = [tf.config.LogicalDeviceConfiguration() for _ in range(count)]
            tf.config.set_logical_device_configuration(cpu, configs)
        except RuntimeError:  # started already: the devices it started with
            pass
    there = tf.config.list_logical_devices(kind)
    if int(index) + count > len(there):
        why = (
            "TensorFlow had started before more could be made; start a new process"
            if kind == "CPU"
            else f"from {device} on"
        )
        raise InputError(
            f"--devices {count}: TensorFlow sees {len(there)} {kind} device(s) here ({why})"
        )
    return tf.distribute.MirroredStrategy([d.name for d in there[int(index) :][:count]])


def grad_clipping(grads, theta):
    """Scale ``grads`` so that their global L2 norm is at most ``theta`` (a list of tensors).

    Runs on the device (no host sync), eagerly or inside ``tf.function``.
    """
    grads = [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g for g in grads]
    norm = tf.linalg.global_norm(grads)
    theta = tf.cast(theta, norm.dtype)
    scale = tf.where(norm > theta, theta / norm, tf.ones_like(norm))
    return [g * tf.cast(scale, g.dtype) for g in grads]


class Engine:
    """An optimizer over a model's variables and the training step built around a loss.

    ``optimizer``: a :class:`dl.optim.OptimizerConfig` or a Keras optimizer; ``clip``: the
    global gradient norm threshold; ``strategy``: a ``tf.distribute`` strategy (default: the
    current one).
    """

    def __init__(self, optimizer, clip: float = 1.0, strategy=None):
        self.config = optimizer if isinstance(optimizer, OptimizerConfig) else None
        self.strategy = strategy or tf.distribute.get_strategy()
        with self.strategy.scope():
            self.optimizer = OPTIMIZERS[optimizer.name](optimizer) if self.config else optimizer
        self.clip, self.model, self.variables = clip, None, None
        with tf.init_scope():
            self.loss_sum = tf.Variable(0.0, dtype=tf.float64, trainable=False, name="loss_sum")

    def build(self, model) -> None:
        """Create the optimizer's state for ``model.trainable_variables`` now, eagerly: Keras
        creates it lazily, which must not happen while a step is traced."""
        self.model, self.variables = model, list(model.trainable_variables)
        if hasattr(self.optimizer, "build"):
            with self.strategy.scope():
                self.optimizer.build(self.variables)

    def step(self, replica_loss, compile: bool = True, join_rows: bool = False):
        """The training step of ``replica_loss(*args) -> (objective, loss_sum, outputs)``,
        which runs on each replica (``objective``: this replica's share of the loss whose
        gradients are taken; ``loss_sum``: added to :meth:`take_loss_sum`'s sum, or None).
        Returns ``step(*args) -> outputs``, one ``tf.function`` unless ``compile=False``;
        ``join_rows``: each output the replicas' rows joined in order (a whole batch's)."""

        def distributed(*args):
            loss_sum, outputs = self.strategy.run(
                functools.partial(self._update, replica_loss), args=args
            )
            if loss_sum is not None:
                self.loss_sum.assign_add(
                    tf.cast(
                        self.strategy.reduce(tf.distribute.ReduceOp.SUM, loss_sum, axis=None),
                        tf.float64,
                    )
                )
            if join_rows and self.strategy.num_replicas_in_sync > 1:
                return tf.nest.map_structure(lambda v: self.strategy.gather(v, 0), outputs)
            return outputs

        return tf.function(distributed) if compile else distributed

    def _update(self, replica_loss, *args):
        with tf.GradientTape() as tape:
            objective, loss_sum, outputs = replica_loss(*args)
        grads = tape.gradient(objective, self.variables)
        grads = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, grads)
        pairs = zip(grad_clipping(grads, self.clip), self.variables)
        if LEGACY:  # summed over replicas already
            self.optimizer.apply_gradients(pairs, skip_gradients_aggregation=True)
        else:
            self.optimizer.apply_gradients(pairs)
        return loss_sum, outputs

    def set_lr(self, lr: float) -> None:
        """The learning rate of the following updates (a schedule's value, set by the host):
        assigned to the Keras optimizer's rate variable, which the compiled step reads, so
        nothing is traced again."""
        self.optimizer.learning_rate = lr

    def take_loss_sum(self) -> float:
        total = float(self.loss_sum.numpy())
        self.loss_sum.assign(0.0)
        return total

    def _slot(self, slot: str) -> list:
        return getattr(self.optimizer, _SLOT_VARIABLES[slot])

    def optimizer_state(self) -> dict[str, np.ndarray]:
        """The optimizer's state under :mod:`dl.optim`'s names (float32 NumPy copies), for an
        ``OptimizerConfig`` and a model with canonical names (a
        :class:`dl.tensorflow.lm.CanonicalModel`)."""
        state = {optim.STEP: np.asarray(self.optimizer.iterations.numpy(), np.float32)}
        for slot in self.config.slots:
            arrays = self.model.canonical([v.numpy() for v in self._slot(slot)])
            state.update(
                {
                    f"{optim.PREFIX}{slot}.{name}": np.asarray(value, np.float32)
                    for name, value in arrays.items()
                }
            )
        return state

    def load_optimizer_state(self, state: dict[str, np.ndarray]) -> None:
        """Continue from ``state``, :meth:`optimizer_state`'s form (checked)."""
        param_shapes = self.model.config.param_shapes()
        optim.check_state(self.config, param_shapes, state)
        # a checkpoint's 0-d step comes back as shape (1,) (np.ascontiguousarray in dl.checkpoint)
        self.optimizer.iterations.assign(int(np.reshape(state[optim.STEP], ())))
        for slot in self.config.slots:
            arrays = self.model.per_variable(
                {name: state[f"{optim.PREFIX}{slot}.{name}"] for name in param_shapes}
            )
            for variable, value in zip(self._slot(slot), arrays):
                variable.assign(np.asarray(value, np.float32))


def _token_loss_sum(loss, y, y_hat):
    """Summed loss over tokens: a per-token loss is summed, a batch mean is scaled back."""
    values = loss(y, y_hat)
    if values.shape.rank == 0:
        return values * tf.cast(tf.size(y), values.dtype)
    return tf.reduce_sum(values)


class TFTrainer(Engine):
    """The engine as the :class:`dl.train.Trainer` of a language model ``net``: ``net(X: (B, T)
    int, state) -> (logits: (T * B, V), state)``, ``net.begin_state(batch_size, dtype)`` and
    ``net.trainable_variables`` (a Keras model may create them on its first call).

    ``loss(y, logits)`` per token (or a batch mean); ``updater``: :class:`Engine`'s
    ``optimizer``; ``theta``: the clipping threshold. With several replicas each trains on its
    rows of the batch and of the state, and the state returned is the whole batch's again, so
    it does not depend on the replica count (a checkpoint's carried state).
    """

    def __init__(self, net, loss, updater, strategy=None, theta=1.0, compile=True):
        super().__init__(updater, theta, strategy)
        self.net, self.loss, self.compile = net, loss, compile
        self.replicas = self.strategy.num_replicas_in_sync
        if net.trainable_variables:
            self.build(net)
        self._step = None

    def begin_state(self, batch_size):
        if batch_size % self.replicas:
            raise ValueError(
                f"batch size {batch_size} must be divisible by the {self.replicas} replicas of "
                f"{type(self.strategy).__name__}"
            )
        return self.net.begin_state(batch_size=batch_size, dtype=tf.float32)

    def train_step(self, X, Y, state):
        X, Y = tf.convert_to_tensor(X), tf.convert_to_tensor(Y)
        if self._step is None:
            self._step = self._build_step(X, Y, state)
        return self._step(X, Y, state)

    def _replica_loss(self, X, Y, state):
        """This replica's rows of the batch and its state: ``(its token loss over the whole
        batch's token count, its token loss sum, its rows of the next state)``."""
        rows = tf.shape(X)[0] // self.replicas
        start = rows * tf.distribute.get_replica_context().replica_id_in_sync_group
        X, Y = X[start : start + rows], Y[start : start + rows]
        state = tf.nest.map_structure(lambda s: s[start : start + rows], state)
        y_hat, state = self.net(X, state)
        loss_sum = _token_loss_sum(self.loss, tf.reshape(tf.transpose(Y), [-1]), y_hat)
        return loss_sum / tf.cast(tf.size(Y) * self.replicas, tf.float32), loss_sum, state

    def _build_step(self, X, Y, state):
        """The compiled step, or the eager one if ``compile=False`` or nothing can be traced."""
        if self.variables is None:  # a Keras model: its variables, then the optimizer's
            self.strategy.run(
                lambda x, s: self.net(x[:1], tf.nest.map_structure(lambda t: t[:1], s)),
                args=(X, state),
            )
            self.build(self.net)
        if not self.compile:
            return self.step(self._replica_loss, compile=False, join_rows=True)
        errors = []
        # dl's scratch model can hand a user's forward_fn its inputs in several ways; any other
        # model (a reader's own class, a Keras model) is traced as it is
        kinds = GRAPH_INPUT_KINDS if isinstance(self.net, RNNModelScratch) else (None,)
        for kind in kinds:
            if kind is not None:
                self.net.graph_inputs = kind
            step = self.step(self._replica_loss, join_rows=True)
            try:
                with _variable_scope_kept():
                    if kind is not None:
                        _check_compiled_forward(self.net, X)
                    step.get_concrete_function(X, Y, state)
                return step
            except Exception as err:  # a forward pass that cannot be traced: try the next way
                errors.append(
                    f"with inputs as a {kind}: {_last_line(err)}" if kind else _last_line(err)
                )
        name = getattr(getattr(self.net, "forward_fn", None), "__name__", type(self.net).__name__)
        advice = (
            "Write the forward function with a Python `for X in inputs` loop and TensorFlow "
            "ops to have it compiled."
            if kinds is GRAPH_INPUT_KINDS
            else f"To have it compiled, let {type(self.net).__name__} hand the forward function "
            "a list of time steps (`tf.unstack(X)`), or use d2l.RNNModelScratch, which does."
        )
        warnings.warn(
            f"dl: {name} could not be compiled with tf.function ({'; '.join(errors)}); training "
            f"runs eagerly, which is several times slower. {advice}",
            RuntimeWarning,
            stacklevel=4,
        )
        return self.step(self._replica_loss, compile=False, join_rows=True)


def _last_line(err: Exception) -> str:
    """The line of an exception that says what went wrong (AutoGraph puts it last)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[-1] if lines else type(err).__name__


@contextlib.contextmanager
def _variable_scope_kept():
    """Undo what a failed trace leaves in TF's global variable scope: ``tf.scan`` sets a
    caching device and does not reset it when the traced function raises."""
    scope = tf.compat.v1.get_variable_scope()
    caching_device = scope.caching_device
    try:
        yield
    finally:
        if scope.caching_device is not caching_device:
            with tf.Graph().as_default():  # the setter refuses to run eagerly
                scope.set_caching_device(caching_device)


def _check_compiled_forward(net, X):
    """Raise unless the traced forward pass gives the eager (book) numbers on one row of ``X``."""
    X = X[:1]
    eager, _ = net(X, net.begin_state(batch_size=1, dtype=tf.float32))
    compiled, _ = tf.function(net.__call__)(X, net.begin_state(batch_size=1, dtype=tf.float32))
    if compiled.shape != eager.shape or not np.allclose(
        compiled, eager, rtol=1e-4, atol=1e-5, equal_nan=True
    ):
        raise ValueError("the traced forward pass gives other numbers than the eager one")
