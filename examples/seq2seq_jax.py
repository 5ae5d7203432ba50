# The seq2seq chapter (9.7) in JAX: the book's GRU encoder-decoder trained on English-French
# pairs with `from dl import jax as d2l` (parameters under canonical names, explicit keys,
# the GRU layers scanned with lax.scan, one jitted training step with optax's Adam).
# The data is the book's fra-eng.zip (DL_DATA_HUB may point it at a mirror of your own).
import jax

from dl import jax as d2l

embed_size, num_hiddens, num_layers, dropout = 32, 32, 2, 0.1
batch_size, num_steps = 64, 10
lr, num_epochs, device = 0.005, 300, d2l.try_gpu()

train_iter, src_vocab, tgt_vocab = d2l.load_data_nmt(batch_size, num_steps)
encoder = d2l.Seq2SeqEncoder(len(src_vocab), embed_size, num_hiddens, num_layers, dropout)
decoder = d2l.Seq2SeqDecoder(len(tgt_vocab), embed_size, num_hiddens, num_layers, dropout)
net = d2l.EncoderDecoder(encoder, decoder, jax.random.PRNGKey(0))
d2l.train_seq2seq(net, train_iter, lr, num_epochs, tgt_vocab, device)

engs = ["go .", "i lost .", "he's calm .", "i'm home ."]
fras = ["va !", "j'ai perdu .", "il est calme .", "je suis chez moi ."]
for eng, fra in zip(engs, fras):
    translation, attention_weight_seq = d2l.predict_seq2seq(
        net, eng, src_vocab, tgt_vocab, num_steps, device
    )
    print(f"{eng} => {translation}, bleu {d2l.bleu(translation, fra, k=2):.3f}")
