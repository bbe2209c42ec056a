"""Where a model keeps its parameters: find them, swap them for other arrays, strip them for shipping.

Three kinds of model are understood:
- gensim ``Word2Vec`` (recognised by duck typing, gensim is not imported): ``'syn0'`` is ``wv.vectors``,
  ``'syn1neg'`` and ``'syn1'`` the output layers when negative sampling or hierarchical softmax is on
  (its subclasses FastText and Doc2Vec are refused: they train arrays of their own);
- a dict of numpy arrays: the keys named (all of them by default);
- any other object: the numpy attributes named with ``params=[...]``.
"""
from __future__ import annotations

import copy

import numpy as np

# The original DeepDist's names for gensim's arrays, and where gensim 4 keeps them.
WORD2VEC_PATHS = {"syn0": ("wv", "vectors"), "syn1neg": ("syn1neg",), "syn1": ("syn1",)}


def is_word2vec(model) -> bool:
    return _is_word2vec_family(model) and not _word2vec_subclass(model)


def _is_word2vec_family(model) -> bool:
    return hasattr(model, "wv") and hasattr(model, "cum_table") and hasattr(model.wv, "vectors")


def _word2vec_subclass(model):
    """What a gensim FastText or Doc2Vec (Word2Vec subclasses) trains beside ``wv.vectors``, or None."""
    if hasattr(model.wv, "vectors_ngrams"):
        return "FastText", "wv.vectors_vocab and wv.vectors_ngrams (the vectors are sums of them)"
    if hasattr(model, "dv"):
        return "Doc2Vec", "dv (the document vectors)"
    return None


def param_names(model, params=None) -> list:
    """The names of the parameters deepdist serves for ``model``."""
    if params is not None:
        names = [params] if isinstance(params, str) else list(params)
    elif _is_word2vec_family(model) and _word2vec_subclass(model):
        kind, arrays = _word2vec_subclass(model)
        raise TypeError(f"deepdist trains gensim Word2Vec, not {kind}: a {kind} also trains {arrays}, which "
                        f"deepdist would not serve; its training would be lost")
    elif is_word2vec(model):
        if not len(model.wv.vectors):
            raise ValueError("the Word2Vec has no vocabulary yet: build it with deepdist.word2vec.build_model(rdd) "
                             "or model.build_vocab(sentences) before DeepDist(model)")
        names = ["syn0"] + (["syn1neg"] if model.negative else []) + (["syn1"] if model.hs else [])
    elif isinstance(model, dict):
        names = list(model)
    else:
        raise TypeError(f"deepdist does not know which arrays of a {type(model).__name__} are parameters: "
                        f"pass params=['name', ...]")
    for name in names:
        array = get_array(model, name)
        if not isinstance(array, np.ndarray):
            raise TypeError(f"parameter {name!r} of the model is a {type(array).__name__}, not a numpy array")
    return names


def _path(model, name) -> tuple:
    if is_word2vec(model) and name in WORD2VEC_PATHS:
        return WORD2VEC_PATHS[name]
    return (name,)


def get_array(model, name):
    if isinstance(model, dict):
        if name not in model:
            raise KeyError(f"the model has no parameter {name!r}; it has {sorted(model)}")
        return model[name]
    holder = model
    *parents, leaf = _path(model, name)
    for part in parents:
        holder = getattr(holder, part)
    if not hasattr(holder, leaf):
        raise AttributeError(f"the model has no attribute {name!r}")
    return getattr(holder, leaf)


def get_arrays(model, names) -> dict:
    return {name: get_array(model, name) for name in names}


def forget_cached(model) -> None:
    """Drop what the model caches of its parameters' values, stale once they change, in place or not: gensim's
    unit-norm vectors for most_similar (its own train drops them too)."""
    if is_word2vec(model):
        model.wv.norms = None


def set_arrays(model, arrays: dict) -> None:
    """Point the model's parameters at ``arrays`` (no copy)."""
    forget_cached(model)
    for name, array in arrays.items():
        if isinstance(model, dict):
            model[name] = array
            continue
        holder = model
        *parents, leaf = _path(model, name)
        for part in parents:
            holder = getattr(holder, part)
        setattr(holder, leaf, array)


def strip(model, names):
    """A copy of ``model`` to ship to workers: parameters replaced by empty arrays, everything else shared.

    The copy is shallow (the original model is untouched); for gensim the key vectors object is copied too,
    its cached unit-norm vectors dropped, so that nothing parameter-sized is pickled, and its Huffman codes
    and paths packed (``PackedArrays``).
    """
    shell = copy.copy(model)  # a dict subclass stays one (a defaultdict keeps its default)
    if is_word2vec(model):
        shell.wv = copy.copy(model.wv)
        shell.wv.norms = None
        shell.lifecycle_events = []
        shell.wv.expandos = {key: PackedArrays(value) if key in PACKED_EXPANDOS else value
                             for key, value in model.wv.expandos.items()}
    set_arrays(shell, {name: np.empty((0,) + get_array(model, name).shape[1:], get_array(model, name).dtype)
                       for name in names})
    return shell


# gensim's hierarchical softmax keeps each word's Huffman code and path as a small array of its own, in an
# object array per attribute. Pickled one by one, 2 x 45,560 of them took 760 ms to unpickle in every task.
PACKED_EXPANDOS = ("code", "point")


class PackedArrays:
    """An object array of 1-D arrays of one dtype, pickled as one flat array, the lengths and an index.

    It unpickles as an object array again, of views into one flat array: gensim's kernels read each word's
    code and path by pointer (PyArray_DATA), which a C-contiguous view serves as well as an array of its own.
    Arrays shared between elements stay shared (gensim gives sibling leaves one path array), so the packed
    form is no larger than the pickled original.
    """

    def __init__(self, arrays):
        self.arrays = arrays

    def __reduce__(self):
        arrays = self.arrays
        if not (isinstance(arrays, np.ndarray) and arrays.dtype == object and len(arrays)
                and all(isinstance(a, np.ndarray) and a.ndim == 1 for a in arrays)
                and len({a.dtype for a in arrays}) == 1):
            return _identity, (arrays,)  # not the layout packing is for: ship it as it is
        numbered = {}  # id of each distinct array -> (its number, in order of first appearance; the array)
        index = np.fromiter((numbered.setdefault(id(a), (len(numbered), a))[0] for a in arrays), np.int64,
                            len(arrays))
        distinct = [a for _, a in numbered.values()]
        lengths = np.fromiter(map(len, distinct), np.int64, len(distinct))
        return unpack_arrays, (np.concatenate(distinct), _narrow(lengths), _narrow(index))


def _narrow(values: np.ndarray) -> np.ndarray:
    return values.astype(np.min_scalar_type(int(values.max())))


def _identity(value):
    return value


def unpack_arrays(flat: np.ndarray, lengths: np.ndarray, index: np.ndarray) -> np.ndarray:
    """The object array ``PackedArrays`` pickled: element i is the view of ``flat`` that ``index[i]`` names."""
    ends = np.cumsum(lengths, dtype=np.int64).tolist()
    views = [flat[end - length:end] for end, length in zip(ends, lengths.tolist())]
    out = np.empty(len(index), dtype=object)
    for i, j in enumerate(index.tolist()):
        out[i] = views[j]  # one by one: a slice assignment would try to stack equal-length views into 2-D
    return out
