"""The JAX backend's one training engine, for the book API, ``dl train`` and ``dl forecast``.

:class:`Engine` turns a model's pure loss into one ``jax.jit`` step (loss and gradients,
global-norm clipping, an optax update, the loss summed on the device) and owns the optimizer
state; with several devices (:func:`local_devices`) each batch is split by rows across them and
the parameters are replicated (XLA sums the gradients). Optimizers are optax's, built from
:class:`dl.optim.OptimizerConfig` through :data:`OPTIMIZERS`, with the learning rate in their
state, so that :meth:`Engine.set_lr` (a host-side schedule) keeps the compiled step. Devices
are named here too, and :func:`collective_timeout` gives XLA:CPU's collectives a timeout longer
than its own (before JAX starts).
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.experimental import multihost_utils

from dl import optim
from dl.errors import InputError
from dl.files import user_cache_dir
from dl.validate import check_gpu, parse_device

# dl.optim's formulas in optax's terms, at learning rate lr: sgd's weight decay is L2 on the
# gradient (coupled; none at 0, so that the book's step stays p - lr g), adam's eps is added
# after the root; rmsprop is uncentred, without momentum, from v = 0
OPTIMIZERS = {
    "sgd": lambda c, lr: (
        optax.chain(optax.add_decayed_weights(c.weight_decay), optax.sgd(lr))
        if c.weight_decay
        else optax.sgd(lr)
    ),
    "adam": lambda c, lr: optax.adam(lr, c.beta1, c.beta2, c.eps, eps_root=0.0),
    "adamw": lambda c, lr: optax.adamw(lr, c.beta1, c.beta2, c.eps, weight_decay=c.weight_decay),
    "rmsprop": lambda c, lr: optax.rmsprop(
        lr,
        decay=c.rho,
        eps=c.eps,
        eps_in_sqrt=False,
        initial_scale=0.0,
        centered=False,
        momentum=None,
    ),
}
SLOT_FIELDS = {"m": "mu", "v": "nu"}  # dl.optim's state slots as optax's state fields
ROWS, REPLICATED = jax.sharding.PartitionSpec("batch"), jax.sharding.PartitionSpec()


# XLA:CPU's collectives wait for every device's thread (and, across processes, for every
# process); past `terminate` seconds (XLA's default 40) it aborts the process (SIGABRT), which
# a loaded machine reaches when one device's thread runs late. Each flag: its share of the
# timeout. jaxlib 0.9 knows them (an unknown flag in XLA_FLAGS would abort JAX's start).
COLLECTIVE_FLAGS = {
    "xla_cpu_collective_call_warn_stuck_timeout_seconds": 0.5,  # XLA's "may be stuck" line
    "xla_cpu_collective_call_terminate_timeout_seconds": 1.0,  # threads of one process
    "xla_cpu_collective_timeout_seconds": 1.0,  # gloo between processes
}
COLLECTIVE_FLAGS_SINCE = (0, 9)


def collective_timeout(seconds: float, environ=os.environ) -> bool:
    """Give XLA:CPU's collectives ``seconds`` before they abort (instead of XLA's 40), through
    ``XLA_FLAGS``, where this jaxlib knows the flags; flags the user set stay as they are.
    Must come before JAX starts its backend (the first device or computation), which reads the
    flags once. Returns whether the flags were set."""
    import jaxlib

    version = tuple(int(part) for part in jaxlib.__version__.split(".")[:2])
    if version < COLLECTIVE_FLAGS_SINCE:
        return False
    flags = environ.get("XLA_FLAGS", "").split()
    for name, share in COLLECTIVE_FLAGS.items():
        if not any(flag.lstrip("-").startswith(f"{name}=") for flag in flags):
            flags.append(f"--{name}={max(1, math.ceil(seconds * share))}")
    environ["XLA_FLAGS"] = " ".join(flags)
    return True


def try_gpu(i=0):
    """The ``i``-th GPU as a ``jax.Device`` if there is one, else the first CPU device."""
    gpus = [device for device in jax.local_devices() if device.platform == "gpu"]
    return gpus[i] if len(gpus) > i else jax.local_devices(backend="cpu")[0]


def device_of(name: str | None):
    """A device name (:func:`dl.validate.parse_device`) as a ``jax.Device``; no name: the
    first GPU if JAX sees one, else the CPU."""
    kind, index = parse_device(name)
    if kind == "gpu" and index is not None:
        check_gpu(name, index, sum(d.platform == "gpu" for d in jax.local_devices()), "JAX")
    return try_gpu(index or 0) if kind == "gpu" else jax.local_devices(backend="cpu")[0]


def device_name(device) -> str:
    return f"{device.platform}:{device.id}"


def local_devices(first, count: int) -> list:
    """``count`` devices of this process of ``first``'s platform, ``first`` the first of them
    (an :class:`Engine`'s ``devices``); InputError naming how many there are, and on a CPU
    how to have more."""
    same = [device for device in jax.local_devices() if device.platform == first.platform]
    start = same.index(first)
    if start + count > len(same):
        more = (
            f"; for {count} CPU devices start with "
            f"XLA_FLAGS=--xla_force_host_platform_device_count={count}"
            if first.platform == "cpu"
            else ""
        )
        raise InputError(
            f"--devices {count}: JAX sees {len(same)} {first.platform} device(s) here, "
            f"{len(same) - start} from {device_name(first)} on{more}"
        )
    return same[start : start + count]


def global_devices(local: list) -> list:
    """The devices of every process that a run on this process's ``local`` devices spans:
    each process's first ``len(local)`` devices of their platform, in process order (one
    process: ``local``); InputError where ``local`` are not this process's first."""
    if jax.process_count() == 1:
        return list(local)
    per_process = {}
    for device in jax.devices():
        if device.platform == local[0].platform:
            per_process.setdefault(device.process_index, []).append(device)
    devices = [d for p in sorted(per_process) for d in per_process[p][: len(local)]]
    if [d for d in devices if d.process_index == jax.process_index()] != list(local):
        raise InputError(
            f"{device_name(local[0])}: with several processes each trains on its first "
            f"{len(local)} device(s); leave out the device index"
        )
    return devices


CACHE_ENV = "DL_JAX_CACHE_DIR"  # where compiled programs are kept; 'off': nowhere
CACHE_MIN_COMPILE_SECONDS = 0.2  # programs that compile faster are not worth a file


def use_compilation_cache() -> Path | None:
    """Keep the XLA programs this process compiles on disk and reuse them in later runs (JAX's
    persistent compilation cache: a run of the same shapes starts without compiling), in
    ``$DL_JAX_CACHE_DIR``, else JAX's own ``JAX_COMPILATION_CACHE_DIR`` where set, else
    :func:`dl.files.user_cache_dir`'s ``jax``. ``DL_JAX_CACHE_DIR=off``, or a directory that
    cannot be made, leaves JAX as it is. Returns the directory in use, or None. Call before
    the first compilation."""
    given = os.environ.get(CACHE_ENV)
    if given == "off":
        return None
    if not given and os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return Path(os.environ["JAX_COMPILATION_CACHE_DIR"])
    path = Path(given).expanduser() if given else user_cache_dir() / "jax"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", CACHE_MIN_COMPILE_SECONDS)
    return path


def build_optimizer(config: optim.OptimizerConfig):
    """``config``'s optax transformation with its learning rate held in its state
    (``optax.inject_hyperparams``: ``state.hyperparams['learning_rate']``, the rest in
    ``state.inner_state``), so that a new rate needs no new compiled step."""
    inject = optax.inject_hyperparams(
        lambda learning_rate: OPTIMIZERS[config.name](config, learning_rate)
    )
    return inject(learning_rate=config.lr)


def grad_clipping(grads, theta):
    """``grads`` (any pytree) scaled so that their global L2 norm is at most ``theta``."""
    leaves = jax.tree_util.tree_leaves(grads)
    norm = jnp.sqrt(sum(jnp.sum(g**2) for g in leaves))
    scale = jnp.minimum(1.0, theta / norm)
    return jax.tree_util.tree_map(lambda g: g * scale, grads)


class Engine:
    """Trains ``model.params`` (a pytree, replaced after every step) on
    ``loss(params, key, X, Y, *carry) -> (mean loss, (summed loss, aux))``, differentiated
    through the mean; ``key`` is split off ``model.key`` at every step where the model has one
    (dropout). Optimizer state is named through ``model.to_numpy(tree) -> {canonical name:
    array}`` and its inverse ``model.from_numpy``. ``devices``: a ``jax.Device`` or a list.
    """

    def __init__(self, model, loss, optimizer: optim.OptimizerConfig, clip: float, devices):
        self.model, self.config, self.steps = model, optimizer, 0
        local = list(devices) if isinstance(devices, (list, tuple)) else [devices]
        self.processes, self.num_devices = jax.process_count(), len(local)
        self.mesh = jax.sharding.Mesh(global_devices(local), ("batch",))
        self.rows = jax.sharding.NamedSharding(self.mesh, ROWS)
        self.replicated = jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec())
        local_mesh = jax.sharding.Mesh(local, ("batch",))
        self.local_rows = jax.sharding.NamedSharding(local_mesh, ROWS)  # a process's rows
        self.optimizer = build_optimizer(optimizer)
        self.params = self._put(model.params)  # on every device; model.params: the local copy
        model.params = self.local_params = self._local(self.params, REPLICATED)
        self.opt_state = self._put(self.optimizer.init(model.params))
        self.loss_sum = self._put(np.zeros((), np.float32))
        self.unused_key = self._put(jax.random.PRNGKey(0))  # no dropout
        self.last_key = self.unused_key  # the key the last step returned
        self.share(0)
        self.compile_seconds = None

        def pure_step(params, opt_state, loss_sum, key, flags, X, Y, *carry):
            key, step_key = jax.random.split(key)
            (_, (total, aux)), grads = jax.value_and_grad(loss, has_aux=True)(
                params, step_key, X, Y, *carry
            )
            updates, opt_state = self.optimizer.update(
                grad_clipping(grads, clip), opt_state, params
            )
            params = optax.apply_updates(params, updates)
            return params, opt_state, loss_sum + total, key, flags.sum(0), aux

        self._step = jax.jit(pure_step)

    def _put(self, tree):
        """A tree of host values (the same on every process) on every device of the mesh."""
        if self.processes == 1:
            return jax.device_put(tree, self.replicated)

        def put(leaf):  # each process places its own copies: no collective (device_put checks
            leaf = np.asarray(leaf)  # that the processes agree, which a failed peer never does)
            return jax.make_array_from_callback(leaf.shape, self.replicated, lambda i: leaf[i])

        return jax.tree_util.tree_map(put, tree)

    def _global(self, tree, spec):
        """This process's part of a mesh-wide tree (``spec``: rows or replicated) as the
        mesh-wide tree; on one process, placed by ``spec``."""
        if self.processes == 1:
            return jax.device_put(tree, jax.sharding.NamedSharding(self.mesh, spec))
        return multihost_utils.host_local_array_to_global_array(tree, self.mesh, spec)

    def _local(self, tree, spec):
        """This process's part of a mesh-wide tree (the inverse of :meth:`_global`)."""
        if self.processes == 1:
            return tree
        return multihost_utils.global_array_to_host_local_array(tree, self.mesh, spec)

    def share(self, count: int) -> None:
        """Carry ``count`` values (:attr:`shared`, this process's) with every step, summed over
        the processes into :attr:`shared_sum` (``dl train``'s stop flags)."""
        self.shared = np.zeros(count, np.float32)
        self.shared_sum = np.zeros(count, np.float32)

    def step(self, X, Y, *carry):
        """One update on the batch ``X, Y`` (split by rows across the devices; ``carry``, such
        as the recurrent state, split the same way) -> ``aux`` on the device (the mean loss is
        not returned: that output slows the compiled step by a tenth on a CPU). With several
        processes each gives and gets back its own rows. The first call compiles: it waits
        for the result and times it."""
        flags = np.zeros((self.num_devices, self.shared.size), np.float32)
        flags[0] = self.shared
        X, Y, flags = self._global((X, Y, flags), ROWS)
        if self.processes > 1:
            carry = self._global(carry, ROWS)
        params = self.params if self.model.params is self.local_params else None
        if params is None:  # the model's weights were replaced (or this is the first step)
            params = self._global(self.model.params, REPLICATED)
        key, start = getattr(self.model, "key", self.unused_key), time.perf_counter()
        if key is not self.last_key:  # a new key (a reseed), placed as the step returns its
            key = self._put(key)  # own: the step compiles once
        out = self._step(params, self.opt_state, self.loss_sum, key, flags, X, Y, *carry)
        if self.compile_seconds is None:
            out = jax.block_until_ready(out)
            self.compile_seconds = time.perf_counter() - start
        self.params, self.opt_state, self.loss_sum, key, self.shared_sum, aux = out
        self.model.params = self.local_params = self._local(self.params, REPLICATED)
        if hasattr(self.model, "key"):
            self.model.key = self.last_key = key
        self.steps += 1
        return self._local(aux, ROWS)

    def take_loss_sum(self) -> float:
        """The summed loss since the last call (one host sync); the sum restarts at 0."""
        total, self.loss_sum = float(self.loss_sum), self._put(np.zeros((), np.float32))
        return total / self.processes  # each process's share, as torch's (dl train sums them)

    def set_lr(self, lr: float) -> None:
        """The learning rate of the following updates (a schedule's value, set by the host):
        one small array in the optimizer's state, so the compiled step stays as it is."""
        rate = self._put(np.asarray(lr, np.float32))
        self.opt_state = self.opt_state._replace(hyperparams={"learning_rate": rate})

    def optimizer_state(self) -> dict[str, np.ndarray]:
        """The state under :mod:`dl.optim`'s canonical names, as NumPy float32 copies."""
        state = {optim.STEP: np.array(self.steps, np.float32)}
        for slot in self.config.slots:
            tree = optax.tree_utils.tree_get(self.opt_state.inner_state, SLOT_FIELDS[slot])
            state.update(
                {
                    f"{optim.PREFIX}{slot}.{name}": np.array(value, np.float32)
                    for name, value in self.model.to_numpy(tree).items()
                }
            )
        return state

    def load_optimizer_state(self, state: dict) -> None:
        """Continue from ``state`` (canonical names, :func:`dl.optim.check_state` checked) at
        the learning rate set last."""
        names = self.model.to_numpy(self.model.params)
        optim.check_state(self.config, {k: v.shape for k, v in names.items()}, state)
        # .item(): checkpoints hold the 0-d step as shape (1,) (np.ascontiguousarray)
        self.steps = int(np.asarray(state[optim.STEP]).item())
        fresh = self.optimizer.init(self.model.params)
        fields = {
            SLOT_FIELDS[slot]: self.model.from_numpy(
                {name: state[f"{optim.PREFIX}{slot}.{name}"] for name in names}
            )
            for slot in self.config.slots
        }
        count = jnp.asarray(self.steps, jnp.int32)
        if optax.tree_utils.tree_get(fresh.inner_state, "count") is not None:  # adam's bias
            fields["count"] = count  # correction
        opt_state = fresh._replace(
            count=count,
            hyperparams=self.opt_state.hyperparams,
            inner_state=optax.tree_utils.tree_set(fresh.inner_state, **fields),
        )
        self.opt_state = self._put(opt_state)
