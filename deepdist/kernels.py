"""The kernels the shards, clients and word2vec tasks use: compiled, or NumPy when asked.

``deepdist._core`` (Cython) is the implementation for real use: it applies a
row update an order of magnitude faster than ``np.add.at``, accumulates
repeated rows correctly, and checks bounds before writing.  ``deepdist._core_ref``
computes the same results with plain NumPy, which is fine for tests and small
jobs but would quietly make a cluster many times slower.  So a missing build
is an ImportError, not a silent fallback; ``DEEPDIST_PURE_PYTHON=1`` selects
the NumPy kernels on purpose.

``IMPLEMENTATION`` is ``"cython"`` or ``"numpy"``.
"""
import os

__all__ = ["IMPLEMENTATION", "ascending", "axpy", "first_row_outside", "gather", "index_words", "max_abs",
           "narrow", "nonzero_rows", "scatter", "scatter_add", "widen"]

if os.environ.get("DEEPDIST_PURE_PYTHON") == "1":
    from ._core_ref import (ascending, axpy, first_row_outside, gather, index_words, max_abs,
                           narrow, nonzero_rows, scatter, scatter_add, widen)

    IMPLEMENTATION = "numpy"
else:
    try:
        from ._core import (ascending, axpy, first_row_outside, gather, index_words, max_abs,
                           narrow, nonzero_rows, scatter, scatter_add, widen)
    except ModuleNotFoundError as exc:
        if exc.name != f"{__package__}._core":
            raise
        raise ImportError(
            "deepdist._core, the compiled kernels, is not built. Install with "
            "`pip install .` from the source tree, or build in place for development "
            "with `python setup.py build_ext --inplace`; or set DEEPDIST_PURE_PYTHON=1 "
            "to use the (much slower) NumPy kernels."
        ) from exc

    IMPLEMENTATION = "cython"
