import copy
import pickle

import numpy as np
import pytest

from deepdist.models import PACKED_EXPANDOS, PackedArrays, param_names, strip

gensim = pytest.importorskip("gensim")
from gensim.models import Word2Vec  # noqa: E402


@pytest.fixture(scope="module")
def sentences():
    """A small corpus with a skewed vocabulary, so that the Huffman tree is deep and uneven."""
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(300)]
    weights = 1.0 / np.arange(1, 301)
    return [list(rng.choice(words, 20, p=weights / weights.sum())) for _ in range(500)]


def hs_model(sentences):
    model = Word2Vec(vector_size=8, window=3, min_count=1, sg=1, hs=1, negative=0, workers=1, seed=5)
    model.build_vocab(sentences)
    return model


def test_huffman_codes_and_paths_ship_packed_and_come_back_equal(sentences):
    model = hs_model(sentences)
    assert set(PACKED_EXPANDOS) == {"code", "point"}  # gensim's per-word Huffman arrays, all of them
    originals = {key: model.wv.expandos[key] for key in PACKED_EXPANDOS}
    shell = pickle.loads(pickle.dumps(strip(model, param_names(model))))
    for key, original in originals.items():
        assert model.wv.expandos[key] is original  # the driver's model is untouched
        unpacked = shell.wv.expandos[key]
        assert unpacked.dtype == object and len(unpacked) == len(original)
        for before, after in zip(original, unpacked):
            assert after.dtype == before.dtype and after.flags.c_contiguous
            np.testing.assert_array_equal(after, before)
        # Arrays gensim shares between words (sibling leaves' paths) stay shared, and nothing else does.
        assert len({id(a) for a in unpacked}) == len({id(a) for a in original})
        assert len(pickle.dumps(PackedArrays(original))) < len(pickle.dumps(original))


def test_a_model_with_packed_paths_trains_exactly_like_the_original(sentences):
    model = hs_model(sentences)
    shell = pickle.loads(pickle.dumps(strip(model, param_names(model))))
    packed = copy.deepcopy(model)
    for key in PACKED_EXPANDOS:
        packed.wv.expandos[key] = shell.wv.expandos[key]
    for trained in (model, packed):
        trained.train(sentences, total_examples=len(sentences), epochs=2)
    np.testing.assert_array_equal(packed.wv.vectors, model.wv.vectors)
    np.testing.assert_array_equal(packed.syn1, model.syn1)


def test_other_layouts_are_shipped_as_they_are():
    mixed = np.empty(2, dtype=object)
    mixed[0], mixed[1] = np.arange(3, dtype=np.uint8), np.arange(2, dtype=np.uint32)
    for value in (mixed, np.arange(5), [np.arange(2)]):
        back = pickle.loads(pickle.dumps(PackedArrays(value)))
        assert type(back) is type(value) and len(back) == len(value)
        for a, b in zip(value, back):
            np.testing.assert_array_equal(a, b)
