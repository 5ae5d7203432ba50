"""The book's PyTorch API (d2l 0.17 names) on the shared ``dl`` core.

    import torch
    from dl import torch as dl
"""

from dl.data.batches import seq_data_iter_random, seq_data_iter_sequential
from dl.data.hub import DATA_HUB, DATA_URL, download
from dl.data.text import Vocab, load_corpus_time_machine, read_time_machine, tokenize
from dl.metrics import perplexity
from dl.plotting import (lazy_plt, plot, set_axes, set_figsize, show_list_len_pair_hist,
                         use_svg_display)
from dl.progress import Accumulator, Animator, Timer
from dl.torch.book import (SeqDataLoader, abs, arange, argmax, astype, concat, cos, cosh,
                           evaluate_loss, exp, eye, float32, int32, linreg, linspace, load_array,
                           load_data_time_machine, log, matmul, meshgrid, normal, numpy, ones,
                           rand, reduce_mean, reduce_sum, reshape, sin, sinh, size, squared_loss,
                           stack, synthetic_data, tanh, tensor, to, transpose, zeros)
from dl.torch.cells import (CELLS, get_gru_params, get_lstm_params, get_rnn_params, gru,
                            init_gru_state, init_lstm_state, init_rnn_state, lstm, rnn)
from dl.torch.models import RNNModel, RNNModelScratch
from dl.torch.training import (TorchTrainer, grad_clipping, predict_dl, sgd, train_dl,
                               train_epoch_dl, try_gpu)
from dl.train import DivergedError

# machine translation, encoder-decoder, sequence to sequence (the book's 9.5-9.7)
from dl.data.hub import download_extract
from dl.data.nmt import (preprocess_nmt, read_data_nmt, tokenize_nmt,
                         truncate_pad)
from dl.metrics import bleu
from dl.torch.seq2seq import (Decoder, Encoder, EncoderDecoder, MaskedSoftmaxCELoss,
                              Seq2SeqDecoder, Seq2SeqEncoder, build_array_nmt, load_data_nmt,
                              predict_seq2seq, sequence_mask, train_seq2seq)

train_ch8, train_epoch_ch8, predict_ch8 = train_dl, train_epoch_dl, predict_dl

__getattr__ = lazy_plt(__name__)  # dl.torch.plt: matplotlib.pyplot, imported on first use
