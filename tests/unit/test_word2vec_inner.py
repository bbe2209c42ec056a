"""deepdist._word2vec_inner.train_batch against gensim's own train_batch_sg / train_batch_cbow: from the same
model state, the same vectors bit for bit, the same words trained, the same loss."""
import copy

import numpy as np
import pytest

pytest.importorskip("gensim")
from gensim.models import Word2Vec  # noqa: E402
from gensim.models.word2vec_inner import MAX_WORDS_IN_BATCH, train_batch_cbow, train_batch_sg  # noqa: E402
from gensim.test.utils import datapath  # noqa: E402

from deepdist._core import index_words  # noqa: E402
from deepdist._word2vec_inner import train_batch  # noqa: E402
from deepdist.word2vec import _huffman_paths  # noqa: E402

LEE = [line.split() for line in open(datapath("lee_background.cor"), encoding="utf8")]


def batches():
    """Batches as word2vec's tasks make them, and the odd ones: unknown words, empty sentences, a sentence
    of only unknown words, and one batch over gensim's 10,000-word limit (gensim trains its first 10,000
    in-vocabulary words and ignores the rest)."""
    out, batch, words = [], [], 0
    for sentence in LEE:
        if words + len(sentence) > 3000:
            out.append(batch)
            batch, words = [], 0
        batch.append(sentence)
        words += len(sentence)
    out.append(batch)
    out.append([["no-such-word"] + LEE[0] + ["nor-this"], [], ["unknown", "words", "only-unknown-zzz"], LEE[1]])
    out.append([[word for sentence in LEE for word in sentence][:MAX_WORDS_IN_BATCH + 2500]])
    return out


@pytest.mark.parametrize("sg", [1, 0], ids=["skipgram", "cbow"])
@pytest.mark.parametrize("hs,negative", [(1, 0), (0, 5), (1, 3)], ids=["hs", "negative", "both"])
@pytest.mark.parametrize("sample", [0.0, 1e-3], ids=["all-words", "subsampled"])
@pytest.mark.parametrize("shrink_windows", [True, False], ids=["shrunk-windows", "full-windows"])
def test_train_batch_is_gensims_bit_for_bit(sg, hs, negative, sample, shrink_windows):
    model = Word2Vec(vector_size=24, window=4, min_count=3, sg=sg, hs=hs, negative=negative, sample=sample,
                     shrink_windows=shrink_windows, cbow_mean=1, seed=7, workers=1)
    model.build_vocab(LEE)
    theirs, ours = model, copy.deepcopy(model)  # the same vectors and the same random state
    initial = model.wv.vectors.copy()
    paths = _huffman_paths(model) if hs else None
    work = np.zeros(model.layer1_size, np.float32)
    neu1 = np.zeros(model.layer1_size, np.float32)
    for alpha, batch in zip(np.linspace(0.025, 0.01, 100), batches()):
        for m in (theirs, ours):
            m.running_training_loss = 0.0
        if sg:
            expected = train_batch_sg(theirs, batch, alpha, work, True)
        else:
            expected = train_batch_cbow(theirs, batch, alpha, work, neu1, True)
        indexes, ends = index_words(batch, ours.wv.key_to_index, len(ours.wv))
        got = train_batch(ours, indexes, ends, alpha, work, neu1, True, paths)
        assert got == expected
        assert ours.running_training_loss == theirs.running_training_loss
    if not sample:  # subsampled, the last batch keeps fewer words than the limit
        assert expected == MAX_WORDS_IN_BATCH  # the last batch hit the limit
    assert np.array_equal(ours.wv.vectors, theirs.wv.vectors)
    assert not np.array_equal(ours.wv.vectors, initial)
    for name in ("syn1", "syn1neg"):
        if hasattr(theirs, name):
            assert np.array_equal(getattr(ours, name), getattr(theirs, name)), name
    assert ours.random.randint(0, 2**31) == theirs.random.randint(0, 2**31)  # as many draws, in order


def test_train_batch_trains_the_rows_of_its_words_only():
    """Not vacuous: the vectors move, and only the rows of words the batch holds (hs: and their paths)."""
    model = Word2Vec(vector_size=16, window=3, min_count=1, sg=1, hs=1, negative=0, sample=0, seed=3, workers=1)
    model.build_vocab(LEE)
    before = model.wv.vectors.copy()
    sentence = LEE[5]
    paths = _huffman_paths(model)
    trained = train_batch(model, *index_words([sentence], model.wv.key_to_index, len(model.wv)), 0.025,
                          np.zeros(16, np.float32), None, False, paths)
    assert trained == len(sentence)
    changed = np.flatnonzero(np.any(model.wv.vectors != before, axis=1))
    assert set(changed) == {model.wv.key_to_index[word] for word in sentence}


def test_train_batch_refuses_what_would_make_gensims_kernels_read_out_of_bounds():
    model = Word2Vec(vector_size=16, min_count=1, sg=1, hs=1, negative=0, sample=0, seed=3, workers=1)
    model.build_vocab(LEE)
    paths = _huffman_paths(model)
    work = np.zeros(16, np.float32)
    before = model.wv.vectors.copy()
    indexes, ends = index_words(LEE[:3], model.wv.key_to_index, len(model.wv))
    past = indexes.copy()
    past[5] = len(model.wv)  # one past the last vector
    with pytest.raises(IndexError, match=f"word index {len(model.wv)} outside the {len(model.wv)} vectors"):
        train_batch(model, past, ends, 0.025, work, None, False, paths)
    too_far = ends.copy()
    too_far[-1] += 1
    with pytest.raises(ValueError, match=f"sentence 2 ends at {len(indexes) + 1}"):
        train_batch(model, indexes, too_far, 0.025, work, None, False, paths)
    with pytest.raises(ValueError, match="sentence 1 ends at 0, after"):
        train_batch(model, indexes, np.array([ends[0], 0, ends[2]]), 0.025, work, None, False, paths)
    with pytest.raises(ValueError, match="work of 8 floats"):
        train_batch(model, indexes, ends, 0.025, np.zeros(8, np.float32), None, False, paths)
    short = tuple(part[:10] for part in paths)
    with pytest.raises(ValueError, match="Huffman paths for 10 and 10 words"):
        train_batch(model, indexes, ends, 0.025, work, None, False, short)
    lengths, starts, nodes, bits = paths
    word = int(indexes[0])
    longer = lengths.copy()
    longer[word] = len(nodes) + 5  # a path running past the nodes
    with pytest.raises(ValueError, match=f"word {word}'s Huffman path .* is outside the {len(nodes)} nodes"):
        train_batch(model, indexes, ends, 0.025, work, None, False, (longer, starts, nodes, bits))
    beyond = nodes.copy()
    beyond[starts[word]] = len(model.syn1)  # a node past syn1's rows
    with pytest.raises(ValueError, match=f"names node {len(model.syn1)}, syn1 has {len(model.syn1)}"):
        train_batch(model, indexes, ends, 0.025, work, None, False, (lengths, starts, beyond, bits))
    assert np.array_equal(model.wv.vectors, before)  # nothing was trained
    assert train_batch(model, indexes, ends, 0.025, work, None, False, paths) == len(indexes)
    assert not np.array_equal(model.wv.vectors, before)  # and the same arguments, put right, train


def test_huffman_paths_flatten_gensims_points_and_codes():
    model = Word2Vec(vector_size=8, min_count=1, hs=1, negative=0, workers=1)
    model.build_vocab(LEE[:50])
    points, codes = model.wv.expandos["point"], model.wv.expandos["code"]
    lengths, starts, nodes, bits = _huffman_paths(model)
    for word in (0, 1, len(points) // 2, len(points) - 1):
        assert np.array_equal(nodes[starts[word]:starts[word] + lengths[word]], points[word])
        assert np.array_equal(bits[starts[word]:starts[word] + lengths[word]], codes[word])
    assert nodes.dtype == np.uint32 and bits.dtype == np.uint8
    codes[-1] = codes[-1][:-1]
    with pytest.raises(ValueError, match="more or fewer code bits"):
        _huffman_paths(model)


def test_train_batch_refuses_a_noise_table_or_lock_factors_gensims_kernels_cannot_use():
    model = Word2Vec(vector_size=16, min_count=1, sg=1, hs=0, negative=5, sample=0, seed=3, workers=1)
    model.build_vocab(LEE)
    work = np.zeros(16, np.float32)
    indexes, ends = index_words(LEE[:3], model.wv.key_to_index, len(model.wv))
    before = model.wv.vectors.copy()
    table = model.cum_table
    for bad, why in ((table[:-1], "cum_table of"), (np.zeros_like(table), "end above 0")):
        model.cum_table = bad
        with pytest.raises(ValueError, match=why):
            train_batch(model, indexes, ends, 0.025, work, None, False, None)
    model.cum_table = table
    lockf = model.wv.vectors_lockf
    model.wv.vectors_lockf = np.ones(0, np.float32)
    with pytest.raises(ValueError, match="vectors_lockf is empty"):
        train_batch(model, indexes, ends, 0.025, work, None, False, None)
    model.wv.vectors_lockf = lockf
    assert np.array_equal(model.wv.vectors, before)
    assert train_batch(model, indexes, ends, 0.025, work, None, False, None) == len(indexes)


def test_more_sentences_than_a_batch_holds_words_all_subsampled_train_nothing():
    # Each sentence subsampling empties still ended a span: past 10,000 of them gensim's loop (and this one,
    # until it skipped empty spans) wrote past its array of sentence ends.
    model = Word2Vec(vector_size=16, min_count=1, sg=1, hs=0, negative=5, sample=1e-3, seed=3, workers=1)
    model.build_vocab(LEE)
    model.wv.expandos["sample_int"][:] = 0  # every word subsampled away
    n = 3 * MAX_WORDS_IN_BATCH
    indexes, ends = np.zeros(n, np.uint32), np.arange(1, n + 1, dtype=np.int64)
    before = model.wv.vectors.copy()
    work = np.zeros(16, np.float32)
    assert train_batch(model, indexes, ends, 0.025, work, None, False, None) == 0
    assert np.array_equal(model.wv.vectors, before)
