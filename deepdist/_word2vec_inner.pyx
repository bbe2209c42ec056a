# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""word2vec's batch loop around gensim's own kernels, with the per-word Python work done in C.

gensim's ``train_batch_sg`` / ``train_batch_cbow`` prepare each batch in Python-level code before they
release the GIL: per word a membership test and a lookup in ``model.wv.key_to_index`` (through attribute
lookups), and with hierarchical softmax two subscripts of object arrays (``expandos['code']`` and
``expandos['point']``) and a ``len``. Profiled in a Spark task (hs, a 45,560-word vocabulary) that preparation
was about a quarter of the batch's time. ``train_batch`` takes the words as vocabulary indexes, which the
task looks up once per chunk for the rows it pulls anyway (``kernels.index_words``), reads Huffman paths
from flat arrays, and calls the very functions gensim's loop calls, cimported from
``gensim.models.word2vec_inner``, drawing its random numbers in the same order. Given the same model state
the result is gensim's bit for bit (tests/unit/test_word2vec_inner.py).

The kernels are declared in deepdist/_pxd/gensim/models/word2vec_inner.pxd, and Cython checks each one's
signature against gensim's module when this module is imported: a gensim whose kernels changed fails the
import (deepdist.word2vec then uses gensim's own loop) instead of being miscalled.
"""
from libc.stdint cimport int64_t, uint8_t, uint32_t

from gensim.models.word2vec_inner cimport (
    REAL_t,
    random_int32,
    w2v_fast_sentence_cbow_hs,
    w2v_fast_sentence_cbow_neg,
    w2v_fast_sentence_sg_hs,
    w2v_fast_sentence_sg_neg,
)

import numpy as np
from gensim.models.word2vec_inner import MAX_WORDS_IN_BATCH

cdef enum:
    # gensim's MAX_SENTENCE_LEN: a batch trains at most this many words (its kernels' arrays are this long).
    MAX_SENTENCE_LEN = 10000

if MAX_WORDS_IN_BATCH != MAX_SENTENCE_LEN:
    raise ImportError(f"gensim's batch limit is {MAX_WORDS_IN_BATCH} words, this module was built for "
                      f"{MAX_SENTENCE_LEN}")


cdef struct Batch:
    # what gensim's Word2VecConfig holds per word of a batch
    int codelens[MAX_SENTENCE_LEN]
    uint32_t indexes[MAX_SENTENCE_LEN]
    int64_t reduced_windows[MAX_SENTENCE_LEN]
    int sentence_idx[MAX_SENTENCE_LEN + 1]
    uint32_t *points[MAX_SENTENCE_LEN]
    uint8_t *codes[MAX_SENTENCE_LEN]


cdef int check_path(long long index, const int64_t[::1] lengths, const int64_t[::1] starts,
                    const uint32_t[::1] nodes, Py_ssize_t n_nodes) except -1:
    """Word ``index``'s Huffman path lies inside ``nodes`` and names rows of syn1 (``n_nodes`` of them):
    gensim's kernels follow it by raw pointer."""
    cdef int64_t length = lengths[index], first = starts[index], k
    if length < 0 or first < 0 or first + length > nodes.shape[0]:
        raise ValueError(f"train_batch: word {index}'s Huffman path [{first}, {first + length}) is outside the "
                         f"{nodes.shape[0]} nodes")
    for k in range(first, first + length):
        if nodes[k] >= n_nodes:
            raise ValueError(f"train_batch: word {index}'s Huffman path names node {nodes[k]}, syn1 has {n_nodes}")
    return 0


def train_batch(model, indexes, ends, alpha, work, neu1, compute_loss, paths):
    """gensim's ``train_batch_sg(model, sentences, alpha, work, compute_loss)`` or, if ``model.sg`` is 0,
    ``train_batch_cbow(model, sentences, alpha, work, neu1, compute_loss)``: the same training, the same
    return value (the words trained) and ``model.running_training_loss`` set the same way, for the
    sentences given by their words' vocabulary indexes.

    indexes, ends: ``deepdist.kernels.index_words(sentences, model.wv.key_to_index, len(model.wv))`` (or a
    run of its sentences: ``indexes`` uint32, sentence s's words ``indexes[ends[s - 1]:ends[s]]``, ``ends``
    int64 and non-decreasing).  paths: with hs, the vocabulary's Huffman paths flattened, as
    ``deepdist.word2vec._huffman_paths`` makes them (lengths and starts int64, nodes uint32 below
    ``len(model.syn1)``, code bits uint8), else None.  The model's arrays must be C-contiguous float32
    (gensim's kernels index them by raw pointer).  An index outside ``model.wv.vectors`` or an end outside
    ``indexes`` raises before anything is trained.
    """
    cdef Batch b
    cdef int sg = model.sg, hs = model.hs, negative = model.negative, sample = model.sample != 0
    cdef int window = model.window, cbow_mean = model.cbow_mean, size = model.wv.vector_size
    cdef int loss = 1 if compute_loss else 0
    cdef REAL_t rate = alpha, running = model.running_training_loss
    cdef REAL_t[:, ::1] syn0 = model.wv.vectors
    cdef REAL_t[::1] lockf = model.wv.vectors_lockf, work_ = work, neu1_
    cdef REAL_t *syn1 = NULL
    cdef REAL_t *syn1neg = NULL
    cdef REAL_t[:, ::1] layer
    cdef const uint32_t[::1] cum_table, sample_ints, nodes
    cdef const uint8_t[::1] bits
    cdef const int64_t[::1] lengths, starts
    cdef const int64_t[::1] reduced
    cdef uint32_t *cum = NULL
    cdef unsigned long long cum_len = 0, next_random = 0
    cdef Py_ssize_t vocab = syn0.shape[0], n_syn1 = 0, s, t
    cdef long long index
    cdef int effective = 0, sentences_in = 0, i, j, k, m, first, last
    cdef const uint32_t[::1] words = indexes
    cdef const int64_t[::1] sentence_ends = ends
    cdef int64_t start, end

    if syn0.shape[1] != size or work_.shape[0] < size:
        raise ValueError(f"train_batch: vectors of {syn0.shape[1]} and work of {work_.shape[0]} floats for "
                         f"vector_size {size}")
    if not sg:
        neu1_ = neu1
        if neu1_.shape[0] < size:
            raise ValueError(f"train_batch: neu1 of {neu1_.shape[0]} floats for vector_size {size}")
    if hs:
        layer = model.syn1
        if layer.shape[1] != size:
            raise ValueError(f"train_batch: syn1 rows of {layer.shape[1]} floats for vector_size {size}")
        syn1, n_syn1 = (&layer[0, 0] if layer.shape[0] else NULL), layer.shape[0]
        lengths, starts, nodes, bits = paths
        if lengths.shape[0] < vocab or starts.shape[0] < vocab or bits.shape[0] != nodes.shape[0]:
            raise ValueError(f"train_batch: Huffman paths for {lengths.shape[0]} and {starts.shape[0]} words, "
                             f"{nodes.shape[0]} nodes and {bits.shape[0]} bits; vocabulary {vocab}")
    if negative:
        layer = model.syn1neg
        if layer.shape[0] != vocab or layer.shape[1] != size:
            raise ValueError(f"train_batch: syn1neg of shape {(layer.shape[0], layer.shape[1])}, vectors "
                             f"{(vocab, size)}")
        syn1neg = &layer[0, 0] if vocab else NULL
        cum_table = model.cum_table
        # gensim's kernels draw a row by bisecting the table, modulo its last entry: it must be as long as
        # the vocabulary and end above 0.
        if cum_table.shape[0] != vocab or not vocab or cum_table[vocab - 1] == 0:
            raise ValueError(f"train_batch: cum_table of {cum_table.shape[0]} entries ending at "
                             f"{cum_table[cum_table.shape[0] - 1] if cum_table.shape[0] else None}, for a "
                             f"vocabulary of {vocab}: it must have one per word and end above 0")
        cum, cum_len = <uint32_t *>&cum_table[0], cum_table.shape[0]
    if sample:
        sample_ints = model.wv.expandos["sample_int"]
        if sample_ints.shape[0] < vocab:
            raise ValueError(f"train_batch: sample_int for {sample_ints.shape[0]} words, vocabulary {vocab}")
    if lockf.shape[0] < 1:  # gensim's kernels index it modulo its length
        raise ValueError("train_batch: vectors_lockf is empty")
    if negative or sample:  # gensim's init_w2v_config draws it so
        next_random = (2**24) * model.random.randint(0, 2**24) + model.random.randint(0, 2**24)

    # The batch's words, as gensim's loop picks them: words outside the vocabulary are skipped (the window
    # closes over them), frequent words are subsampled, and the batch ends at MAX_SENTENCE_LEN words.
    b.sentence_idx[0] = 0
    start = 0
    for s in range(sentence_ends.shape[0]):
        end = sentence_ends[s]
        if not start <= end <= words.shape[0]:
            raise ValueError(f"train_batch: sentence {s} ends at {end}, after {start}, of {words.shape[0]} words")
        if end == start:  # gensim skips an empty sentence; one of only unknown words trains nothing either
            continue
        for t in range(start, end):
            index = words[t]
            if index >= vocab:
                raise IndexError(f"train_batch: word index {index} outside the {vocab} vectors")
            if sample and sample_ints[index] < random_int32(&next_random):
                continue
            b.indexes[effective] = <uint32_t>index
            if hs:
                check_path(index, lengths, starts, nodes, n_syn1)
                b.codelens[effective] = <int>lengths[index]
                b.points[effective] = <uint32_t *>&nodes[0] + starts[index]
                b.codes[effective] = <uint8_t *>&bits[0] + starts[index]
            effective += 1
            if effective == MAX_SENTENCE_LEN:
                break
        if effective > b.sentence_idx[sentences_in]:  # a sentence subsampling emptied trains nothing: not
            sentences_in += 1                          # counted, so sentences_in never passes effective
            b.sentence_idx[sentences_in] = effective
        start = end
        if effective == MAX_SENTENCE_LEN:
            break

    if model.shrink_windows:  # gensim's one randint call for the batch's reduced windows
        reduced = np.asarray(model.random.randint(0, window, effective), dtype=np.int64)
        for i in range(effective):
            b.reduced_windows[i] = reduced[i]
    else:
        for i in range(effective):
            b.reduced_windows[i] = 0

    cdef REAL_t *syn0_ = &syn0[0, 0] if vocab else NULL
    cdef REAL_t *lockf_ = &lockf[0]
    cdef uint32_t lockf_len = lockf.shape[0]
    cdef REAL_t *work_p = &work_[0]
    cdef REAL_t *neu1_p = NULL if sg else &neu1_[0]
    with nogil:
        for s in range(sentences_in):
            first, last = b.sentence_idx[s], b.sentence_idx[s + 1]
            for i in range(first, last):
                j = i - window + <int>b.reduced_windows[i]
                if j < first:
                    j = first
                k = i + window + 1 - <int>b.reduced_windows[i]
                if k > last:
                    k = last
                if sg:
                    for m in range(j, k):
                        if m == i:
                            continue
                        if hs:
                            w2v_fast_sentence_sg_hs(b.points[i], b.codes[i], b.codelens[i], syn0_, syn1, size,
                                                    b.indexes[m], rate, work_p, lockf_, lockf_len, loss,
                                                    &running)
                        if negative:
                            next_random = w2v_fast_sentence_sg_neg(negative, cum, cum_len, syn0_, syn1neg, size,
                                                                   b.indexes[i], b.indexes[m], rate, work_p,
                                                                   next_random, lockf_, lockf_len, loss,
                                                                   &running)
                else:
                    if hs:
                        w2v_fast_sentence_cbow_hs(b.points[i], b.codes[i], b.codelens, neu1_p, syn0_, syn1,
                                                  size, b.indexes, rate, work_p, i, j, k, cbow_mean, lockf_,
                                                  lockf_len, loss, &running)
                    if negative:
                        next_random = w2v_fast_sentence_cbow_neg(negative, cum, cum_len, b.codelens, neu1_p,
                                                                 syn0_, syn1neg, size, b.indexes, rate, work_p,
                                                                 i, j, k, cbow_mean, next_random, lockf_,
                                                                 lockf_len, loss, &running)

    model.running_training_loss = running
    return effective
