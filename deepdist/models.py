"""Where a model keeps its parameters: find them, swap them for other arrays, strip them for shipping.

Three kinds of model are understood:
- gensim ``Word2Vec`` (recognised by duck typing, gensim is not imported): ``'syn0'`` is ``wv.vectors``,
  ``'syn1neg'`` and ``'syn1'`` the output layers when negative sampling or hierarchical softmax is on;
- a dict of numpy arrays: the keys named (all of them by default);
- any other object: the numpy attributes named with ``params=[...]``.
"""
from __future__ import annotations

import copy

import numpy as np

# The original DeepDist's names for gensim's arrays, and where gensim 4 keeps them.
WORD2VEC_PATHS = {"syn0": ("wv", "vectors"), "syn1neg": ("syn1neg",), "syn1": ("syn1",)}


def is_word2vec(model) -> bool:
    return hasattr(model, "wv") and hasattr(model, "cum_table") and hasattr(model.wv, "vectors")


def param_names(model, params=None) -> list:
    """The names of the parameters deepdist serves for ``model``."""
    if params is not None:
        names = [params] if isinstance(params, str) else list(params)
    elif is_word2vec(model):
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


def set_arrays(model, arrays: dict) -> None:
    """Point the model's parameters at ``arrays`` (no copy)."""
    if is_word2vec(model) and "syn0" in arrays:
        model.wv.norms = None  # gensim caches unit-norm vectors for most_similar: stale once syn0 changes
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
    and its cached unit-norm vectors dropped, so that nothing parameter-sized is pickled.
    """
    if isinstance(model, dict):
        shell = dict(model)
    else:
        shell = copy.copy(model)
        if is_word2vec(model):
            shell.wv = copy.copy(model.wv)
            shell.wv.norms = None
            shell.lifecycle_events = []
    set_arrays(shell, {name: np.empty((0,) + get_array(model, name).shape[1:], get_array(model, name).dtype)
                       for name in names})
    return shell
