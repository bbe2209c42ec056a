"""deepdist.word2vec's default sync interval: how it follows the number of tasks training at once."""
import pytest

pytest.importorskip("gensim")
from deepdist import word2vec  # noqa: E402
from deepdist.word2vec import default_chunk_words, hs_concurrency_warning  # noqa: E402


@pytest.mark.parametrize("hs", [False, True])
def test_up_to_two_tasks_at_once_sync_at_the_base_interval(hs):
    base = word2vec.CHUNK_WORDS_HS if hs else word2vec.CHUNK_WORDS
    assert default_chunk_words(hs, 1) == default_chunk_words(hs, 2) == base


@pytest.mark.parametrize("hs", [False, True])
def test_more_tasks_at_once_sync_proportionally_more_often(hs):
    # The words all tasks train between two syncs of one task stay about 2 x the base interval.
    base = word2vec.CHUNK_WORDS_HS if hs else word2vec.CHUNK_WORDS
    assert default_chunk_words(hs, 4) == base // 2
    assert default_chunk_words(hs, 8) == max(word2vec.MIN_CHUNK_WORDS, base // 4)
    for tasks in range(1, 64):
        assert default_chunk_words(hs, tasks + 1) <= default_chunk_words(hs, tasks)


def test_no_interval_falls_below_the_floor():
    assert word2vec.MIN_CHUNK_WORDS < word2vec.CHUNK_WORDS_HS < word2vec.CHUNK_WORDS
    for hs in (False, True):
        assert default_chunk_words(hs, 1000) == word2vec.MIN_CHUNK_WORDS


def test_the_hierarchical_softmax_warning_says_how_many_tasks_and_what_to_do():
    message = hs_concurrency_warning(8)
    assert "8 tasks" in message and f"more than {word2vec.HS_TASKS_AT_ONCE}" in message
    assert "negative sampling" in message
