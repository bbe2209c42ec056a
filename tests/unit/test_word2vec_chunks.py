"""deepdist.word2vec beyond two tasks at once: the default sync interval, and hierarchical softmax's hot rows."""
import collections

import pytest

pytest.importorskip("gensim")
from gensim.models import Word2Vec  # noqa: E402
from gensim.test.utils import datapath  # noqa: E402

from deepdist import word2vec  # noqa: E402
from deepdist.word2vec import default_chunk_words  # noqa: E402


@pytest.mark.parametrize("hs", [False, True])
def test_up_to_two_tasks_at_once_sync_at_the_base_interval(hs):
    base = word2vec.CHUNK_WORDS_HS if hs else word2vec.CHUNK_WORDS
    assert default_chunk_words(hs, 1) == default_chunk_words(hs, 2) == base


@pytest.mark.parametrize("hs", [False, True])
def test_more_tasks_at_once_sync_proportionally_more_often(hs):
    # The words all tasks train between two syncs of one task stay about 2 x the base interval.
    base = word2vec.CHUNK_WORDS_HS if hs else word2vec.CHUNK_WORDS
    assert default_chunk_words(hs, 3) == base * 2 // 3
    assert default_chunk_words(hs, 4) == base // 2
    for tasks in range(1, 64):
        assert default_chunk_words(hs, tasks + 1) <= default_chunk_words(hs, tasks)


def test_no_interval_falls_below_its_floor():
    # Negative sampling goes on shortening to 1,000 words; hierarchical softmax stops at 2,500, which it
    # reaches at 4 tasks (its hot rows thin out in shorter chunks).
    assert word2vec.MIN_CHUNK_WORDS < word2vec.MIN_CHUNK_WORDS_HS < word2vec.CHUNK_WORDS_HS < word2vec.CHUNK_WORDS
    assert default_chunk_words(False, 8) == word2vec.CHUNK_WORDS // 4 == 2_500
    assert default_chunk_words(False, 1000) == word2vec.MIN_CHUNK_WORDS
    assert default_chunk_words(True, 4) == default_chunk_words(True, 8) == word2vec.MIN_CHUNK_WORDS_HS == 2_500
    assert default_chunk_words(True, 1000) == word2vec.MIN_CHUNK_WORDS_HS


@pytest.mark.parametrize("sg", [1, 0], ids=["skip-gram", "cbow"])
def test_hot_rows_are_those_a_chunk_changes_at_least_hot_touches_times(sg):
    # Worked out the long way: a word's vector changes about window + 1 times per occurrence (once per word
    # it is context of); skip-gram changes the nodes on a word's Huffman path as often, CBOW once.
    sentences = [line.split() for line in open(datapath("lee_background.cor"), encoding="utf8")]
    model = Word2Vec(vector_size=8, window=3, min_count=2, hs=1, negative=0, sg=sg)
    model.build_vocab(sentences)
    counts = [model.wv.get_vecattr(word, "count") for word in model.wv.index_to_key]
    total = sum(counts)
    node_share = collections.Counter()
    for word, count in enumerate(counts):
        for node in model.wv.get_vecattr(word, "point"):
            node_share[int(node)] += count / total
    for chunk_words in (2_000, 10_000, 50_000):
        contexts = chunk_words * (model.window + 1)
        predictions = contexts if sg else chunk_words
        hot = word2vec.hot_rows(model, chunk_words)
        expected_syn0 = [w for w, count in enumerate(counts) if contexts * count / total >= word2vec.HOT_TOUCHES]
        expected_syn1 = sorted(n for n, share in node_share.items()
                               if predictions * share >= word2vec.HOT_TOUCHES)
        assert hot["syn0"].tolist() == expected_syn0
        assert hot["syn1"].tolist() == expected_syn1
    assert 0 < len(word2vec.hot_rows(model, 2_000)["syn1"]) < len(word2vec.hot_rows(model, 50_000)["syn1"])
