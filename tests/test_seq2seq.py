"""The book's seq2seq pieces per backend: shapes, masks and the masked loss against NumPy,
dl's training step against the book's loop from the same weights, the three frameworks
against each other from the same canonical weights, and greedy prediction."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from dl import seq2seq as core
from dl.data.text import Vocab

SPEED = Path(__file__).parents[1] / "benchmarks" / "seq2seq_speed.py"
SIZES = dict(embed_size=8, num_hiddens=16, num_layers=2)
SRC_V, TGT_V, NUM_STEPS, BATCH, NUM_BATCHES = 12, 14, 7, 8, 3
INSTALLED = [fw for fw in ("torch", "tensorflow", "jax") if importlib.util.find_spec(fw)]


def _module(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def speed():
    """benchmarks/seq2seq_speed.py: the book's loops (``book_*_step``) and random pairs."""
    sys.path.insert(0, str(SPEED.parent))  # the benchmark imports seed_speed beside it
    try:
        return _module(SPEED, "seq2seq_speed")
    finally:
        sys.path.remove(str(SPEED.parent))


@pytest.fixture(scope="module")
def batches(speed):
    """NUM_BATCHES fixed batches of random pairs in the test's vocabulary sizes."""
    src, src_len, tgt, tgt_len = speed.random_pairs(
        seed=1, num_pairs=BATCH * NUM_BATCHES, num_steps=NUM_STEPS
    )
    src, tgt = np.minimum(src, SRC_V - 1), np.minimum(tgt, TGT_V - 1)
    rows = [slice(i * BATCH, (i + 1) * BATCH) for i in range(NUM_BATCHES)]
    return [(src[r], src_len[r], tgt[r], tgt_len[r]) for r in rows]


@pytest.fixture(scope="module")
def params():
    """Random canonical weights (large enough that clipping at 1 is active)."""
    rng = np.random.default_rng(0)
    shapes = core.param_shapes(
        SRC_V, TGT_V, SIZES["embed_size"], SIZES["num_hiddens"], SIZES["num_layers"]
    )
    return {name: rng.normal(0, 0.5, shape).astype(np.float32) for name, shape in shapes.items()}


def _skip_unless(framework):
    return pytest.mark.skipif(framework not in INSTALLED, reason=f"{framework} is not installed")


# --- PyTorch ---------------------------------------------------------------------------


def _torch_net(params):
    import torch

    from dl import torch as d2l
    from dl.torch.seq2seq import load_params

    torch.manual_seed(0)
    net = d2l.EncoderDecoder(d2l.Seq2SeqEncoder(SRC_V, **SIZES), d2l.Seq2SeqDecoder(TGT_V, **SIZES))
    load_params(net, params)
    return net.train()


def _torch_batch(batch):
    import torch

    return [torch.from_numpy(np.asarray(a)) for a in batch]


@_skip_unless("torch")
def test_torch_shapes_mask_and_loss_are_the_books():
    import torch

    from dl import torch as d2l

    encoder = d2l.Seq2SeqEncoder(vocab_size=10, embed_size=8, num_hiddens=16, num_layers=2)
    X = torch.zeros((4, 7), dtype=torch.long)
    output, state = encoder(X)
    assert output.shape == (7, 4, 16) and state.shape == (2, 4, 16)
    decoder = d2l.Seq2SeqDecoder(vocab_size=10, embed_size=8, num_hiddens=16, num_layers=2)
    output, state = decoder(X, decoder.init_state(encoder(X)))
    assert output.shape == (4, 7, 10) and state.shape == (2, 4, 16)
    masked = d2l.sequence_mask(torch.tensor([[1, 2, 3], [4, 5, 6]]), torch.tensor([1, 2]))
    assert masked.tolist() == [[1, 0, 0], [4, 5, 0]]
    masked = d2l.sequence_mask(torch.ones(2, 3, 4), torch.tensor([1, 2]), value=-1)
    assert masked[:, :, 0].tolist() == [[1, -1, -1], [1, 1, -1]] and (masked[1, 1] == 1).all()
    loss = d2l.MaskedSoftmaxCELoss()(
        torch.ones(3, 4, 10), torch.ones((3, 4), dtype=torch.long), torch.tensor([4, 2, 0])
    )
    np.testing.assert_allclose(loss.numpy(), [np.log(10), np.log(10) / 2, 0], rtol=1e-6)


@pytest.mark.parametrize("framework", INSTALLED)
@pytest.mark.slow
def test_masked_loss_matches_numpy(framework):
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(3, 5, 6)).astype(np.float32)
    labels, valid_len = rng.integers(0, 6, (3, 5)), np.array([5, 2, 0])
    expected = core.masked_softmax_ce(logits, labels, valid_len)
    if framework == "torch":
        import torch

        from dl.torch import MaskedSoftmaxCELoss

        got = MaskedSoftmaxCELoss()(
            torch.tensor(logits), torch.tensor(labels), torch.tensor(valid_len)
        ).numpy()
    elif framework == "tensorflow":
        from dl.tensorflow import MaskedSoftmaxCELoss

        got = MaskedSoftmaxCELoss(valid_len)(labels.astype(np.int32), logits).numpy()
    else:
        from dl.jax import masked_softmax_ce

        got = np.asarray(masked_softmax_ce(logits, labels, valid_len))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


@_skip_unless("torch")
def test_torch_train_step_equals_the_books_loop(speed, batches, params):
    import torch

    from dl.torch import MaskedSoftmaxCELoss
    from dl.torch.seq2seq import Seq2SeqTrainer, numpy_params

    book_net = _torch_net(params)
    optimizer = torch.optim.Adam(book_net.parameters(), lr=0.01)
    book = [
        speed.book_torch_step(
            book_net, optimizer, MaskedSoftmaxCELoss(), _torch_batch(b), speed.TGT, "cpu"
        )
        for b in batches
    ]
    trainer = Seq2SeqTrainer(_torch_net(params), 0.01, speed.TGT, "cpu")
    ours = []
    for batch in batches:
        trainer.train_step(*_torch_batch(batch))
        ours.append(trainer.take_sums())
    np.testing.assert_allclose(ours, book, rtol=1e-6)
    assert book[-1][0] != book[0][0]  # the weights did change between steps
    _assert_same_params(numpy_params(trainer.net), numpy_params(book_net), params)


def _assert_same_params(ours, book, start):
    assert ours.keys() == book.keys() == start.keys()
    for name in start:
        np.testing.assert_allclose(ours[name], book[name], rtol=1e-5, atol=1e-6, err_msg=name)
        assert not np.allclose(ours[name], start[name]), f"{name} was not trained"


@_skip_unless("torch")
def test_torch_train_seq2seq_prints_the_books_line(batches, params, speed, capsys):
    import torch

    from dl.data.nmt import ArrayBatches
    from dl.torch import train_seq2seq

    data_iter = ArrayBatches(
        [np.concatenate(a) for a in zip(*batches)], BATCH, convert=torch.from_numpy
    )
    animator = train_seq2seq(_torch_net(params), data_iter, 0.005, 10, speed.TGT, "cpu")
    line = capsys.readouterr().out.strip()
    assert line.startswith("loss ") and line.endswith(" tokens/sec on cpu"), line
    assert animator.X == [[10]] and float(line.split()[1].rstrip(",")) == pytest.approx(
        animator.Y[0][0], abs=1e-3
    )


# --- TensorFlow -------------------------------------------------------------------------


def _tf_net(params):
    from dl import tensorflow as d2l
    from dl.tensorflow.seq2seq import load_params

    net = d2l.EncoderDecoder(d2l.Seq2SeqEncoder(SRC_V, **SIZES), d2l.Seq2SeqDecoder(TGT_V, **SIZES))
    X = np.zeros((1, NUM_STEPS), np.int32)
    net(X, X, np.ones(1, np.int32), training=False)  # build
    load_params(net, params)
    return net


def _tf_batch(batch):
    import tensorflow as tf

    return [tf.constant(a, tf.int32) for a in batch]


@_skip_unless("tensorflow")
@pytest.mark.slow
def test_tensorflow_shapes_and_mask_are_the_books():
    import tensorflow as tf

    from dl import tensorflow as d2l

    encoder = d2l.Seq2SeqEncoder(vocab_size=10, embed_size=8, num_hiddens=16, num_layers=2)
    X = tf.zeros((4, 7))
    output, state = encoder(X, training=False)
    assert output.shape == (4, 7, 16) and [s.shape for s in state] == [(4, 16), (4, 16)]
    decoder = d2l.Seq2SeqDecoder(vocab_size=10, embed_size=8, num_hiddens=16, num_layers=2)
    output, state = decoder(X, decoder.init_state(encoder(X)), training=False)
    assert output.shape == (4, 7, 10) and len(state) == 2
    masked = d2l.sequence_mask(tf.constant([[1, 2, 3], [4, 5, 6]]), tf.constant([1, 2]))
    assert masked.numpy().tolist() == [[1, 0, 0], [4, 5, 0]]


@_skip_unless("tensorflow")
@pytest.mark.slow
def test_tensorflow_train_step_equals_the_books_loop(speed, batches, params):
    import tensorflow as tf

    from dl.tensorflow.seq2seq import Seq2SeqTrainer, numpy_params

    book_net = _tf_net(params)
    optimizer = tf.keras.optimizers.Adam(learning_rate=0.01)
    book = [speed.book_tf_step(book_net, optimizer, _tf_batch(b), speed.TGT) for b in batches]
    trainer = Seq2SeqTrainer(_tf_net(params), 0.01, speed.TGT)
    ours = []
    for batch in batches:
        trainer.train_step(*_tf_batch(batch))
        ours.append(trainer.take_sums())
    np.testing.assert_allclose(ours, book, rtol=1e-5)
    _assert_same_params(numpy_params(trainer.net), numpy_params(book_net), params)


# --- all frameworks ---------------------------------------------------------------------

ADAM_EPSILON = 1e-12  # Keras adds its epsilon before the bias correction, the others after


def _losses(framework, params, batches, vocab):
    """The loss sum of each step of dl's trainer from ``params`` (no dropout), with an Adam
    epsilon small enough that where each framework adds it does not show."""
    if framework == "torch":
        from dl.torch.seq2seq import Seq2SeqTrainer

        trainer, convert = Seq2SeqTrainer(_torch_net(params), 0.01, vocab, "cpu"), _torch_batch
        trainer.optimizer.param_groups[0]["eps"] = ADAM_EPSILON
    elif framework == "tensorflow":
        from dl.tensorflow.seq2seq import Seq2SeqTrainer

        trainer, convert = Seq2SeqTrainer(_tf_net(params), 0.01, vocab), _tf_batch
        trainer.optimizer.epsilon = ADAM_EPSILON
    else:
        import jax
        import optax

        from dl import jax as d2l
        from dl.jax.seq2seq import Seq2SeqTrainer

        net = d2l.EncoderDecoder(
            d2l.Seq2SeqEncoder(SRC_V, **SIZES),
            d2l.Seq2SeqDecoder(TGT_V, **SIZES),
            jax.random.PRNGKey(0),
        )
        assert net.params.keys() == params.keys()
        net.params = dict(params)
        trainer = Seq2SeqTrainer(net, 0.01, vocab)
        trainer.optimizer = optax.chain(
            optax.clip_by_global_norm(1.0), optax.adam(0.01, eps=ADAM_EPSILON)
        )  # before tracing
        convert = lambda batch: [np.asarray(a, np.int32) for a in batch]
    losses = []
    for batch in batches:
        trainer.train_step(*convert(batch))
        losses.append(trainer.take_sums()[0])
    return losses


@pytest.mark.skipif(len(INSTALLED) < 2, reason="fewer than two frameworks are installed")
@pytest.mark.slow
def test_frameworks_give_the_same_losses_from_the_same_weights(speed, batches, params):
    losses = {fw: _losses(fw, params, batches, speed.TGT) for fw in INSTALLED}
    first, *others = INSTALLED
    for fw in others:
        np.testing.assert_allclose(losses[fw], losses[first], rtol=1e-5, err_msg=fw)
    assert losses[first][-1] < losses[first][0]


@pytest.mark.parametrize("framework", INSTALLED)
@pytest.mark.slow
def test_predict_stops_at_eos_or_after_num_steps(framework, params, speed):
    vocab = speed.TGT
    src_vocab = Vocab(reserved_tokens=["<pad>", "<bos>", "<eos>", "a", "b"])
    translations = []
    for token in ("<eos>", "w3"):  # the dense bias makes every step predict `token`
        biased = dict(
            params,
            **{
                "decoder.W_hq": np.zeros_like(params["decoder.W_hq"]),
                "decoder.b_q": np.eye(TGT_V, dtype=np.float32)[vocab[token]],
            },
        )
        if framework == "torch":
            from dl.torch import predict_seq2seq

            out = predict_seq2seq(_torch_net(biased), "a b", src_vocab, vocab, 5, "cpu")
        elif framework == "tensorflow":
            from dl.tensorflow import predict_seq2seq

            out = predict_seq2seq(_tf_net(biased), "a b", src_vocab, vocab, 5)
        else:
            import jax

            from dl import jax as d2l

            net = d2l.EncoderDecoder(
                d2l.Seq2SeqEncoder(SRC_V, **SIZES),
                d2l.Seq2SeqDecoder(TGT_V, **SIZES),
                jax.random.PRNGKey(0),
            )
            net.params = biased
            out = d2l.predict_seq2seq(net, "a b", src_vocab, vocab, 5)
        translations.append(out[0])
        assert out[1] == []
    assert translations == ["", "w3 w3 w3 w3 w3"]
