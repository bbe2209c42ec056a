"""deepdist.word2vec beyond two tasks at once: the default sync interval, and hierarchical softmax's hot rows."""
import collections
import re

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


def test_more_tasks_at_once_sync_as_the_square_of_two_over_the_tasks():
    # Negative sampling: 10,000 words for 2 tasks, 10,000 x (2/3)^2 for 3, a quarter for 4, and 1,000 (its
    # floor, above 10,000 x (2/8)^2 = 625) for 8.
    assert word2vec.CHUNK_WORDS == 10_000 and word2vec.MIN_CHUNK_WORDS == 1_000
    assert [default_chunk_words(False, tasks) for tasks in (2, 3, 4, 5, 6, 8)] == [10_000, 4_444, 2_500, 1_600,
                                                                                  1_111, 1_000]
    for hs in (False, True):
        for tasks in range(1, 64):
            assert default_chunk_words(hs, tasks + 1) <= default_chunk_words(hs, tasks)


def test_hierarchical_softmax_shortens_as_two_over_the_tasks_and_stops_sooner():
    # 5,000 words for 2 tasks, 3,333 for 3, then its floor of 2,500 (its hot rows thin out in shorter chunks).
    assert word2vec.CHUNK_WORDS_HS == 5_000 and word2vec.MIN_CHUNK_WORDS_HS == 2_500
    assert [default_chunk_words(True, tasks) for tasks in (2, 3, 4, 8, 1000)] == [5_000, 3_333, 2_500, 2_500, 2_500]
    assert default_chunk_words(False, 1000) == word2vec.MIN_CHUNK_WORDS


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


@pytest.mark.parametrize("bad, said", [(None, "NoneType (None)"), (5, "int (5)")])
def test_a_sentence_that_is_no_sequence_of_tokens_is_named(bad, said):
    with pytest.raises(TypeError, match=rf"a sentence must be a list of tokens, got {re.escape(said)}"):
        list(word2vec._chunks([["a", "b"], bad], 10))
    assert list(word2vec._chunks([("a", "b"), ["c"]], 10)) == [([["a", "b"], ["c"]], 2)]  # tuples become lists
