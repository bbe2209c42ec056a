"""NumPy twin of ``deepdist._core``: same functions, signatures, exceptions and results.

It is the oracle the tests hold the compiled kernels to, and the fallback
``deepdist.kernels`` selects when ``DEEPDIST_PURE_PYTHON=1``.  So that code
behaves the same on either, it also rejects what the compiled kernels cannot
take (a typed memoryview ``floating[::1]`` / ``floating[:, ::1]`` requires a
C-contiguous buffer of exactly that many dimensions, and a writable one for
outputs), with the ValueError messages Cython uses for those.
"""
import operator

import numpy as np

__all__ = ["ascending", "axpy", "first_row_outside", "gather", "index_words", "max_abs", "narrow", "nonzero_rows",
           "scatter", "scatter_add", "widen"]

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_HALF, _SINGLE = np.dtype(np.float16), np.dtype(np.float32)


def _float_dtype(func, name, a):
    dtype = np.asarray(a).dtype
    if dtype not in _FLOAT_DTYPES:
        raise TypeError(f"{func}: {name} must be float32 or float64, got {dtype}")
    return dtype


def _same_float_dtype(func, a_name, a, b_name, b):
    a_dtype = _float_dtype(func, a_name, a)
    b_dtype = _float_dtype(func, b_name, b)
    if a_dtype != b_dtype:
        raise TypeError(f"{func}: {a_name} is {a_dtype} but {b_name} is {b_dtype}; "
                        f"both must have the same dtype")


def _wire_dtypes(func, param_name, param, wire_name, wire):
    """The dtypes of a parameter-side array and a wire-side one: equal float32 or float64, or float16 on the
    wire side of a float32 parameter (the half-precision wire, see ``deepdist._core``)."""
    param_dtype, wire_dtype = np.asarray(param).dtype, np.asarray(wire).dtype
    if wire_dtype == _HALF and param_dtype == _SINGLE:
        return
    if wire_dtype == _HALF:
        _float_dtype(func, param_name, param)
        raise TypeError(f"{func}: {wire_name} is float16 but {param_name} is {param_dtype}; float16 goes only "
                        f"with float32")
    _same_float_dtype(func, param_name, param, wire_name, wire)


def _check_rows(func, rows):
    dtype = np.asarray(rows).dtype
    if dtype != np.int64:
        raise TypeError(f"{func}: rows must be int64, got {dtype}")


def _check_apart(func, a_name, a, b_name, b):
    """Refuse an output that shares memory with an input (see ``deepdist._core``)."""
    if np.may_share_memory(a, b):
        raise ValueError(f"{func}: {a_name} and {b_name} share memory; pass a copy of {b_name}")


def _view(a, ndim, writable=False):
    """a as an ndarray sharing its memory, checked like a typed memoryview conversion."""
    # Through memoryview() so that a non-buffer (a list) raises TypeError
    # instead of becoming a temporary copy that silently swallows the output.
    array = np.asarray(memoryview(a))
    if array.ndim != ndim:
        raise ValueError(f"Buffer has wrong number of dimensions (expected {ndim}, got {array.ndim})")
    if not array.flags.c_contiguous:
        raise ValueError("ndarray is not C-contiguous")
    if writable and not array.flags.writeable:
        raise ValueError("buffer source array is read-only")
    return array


def _check_row_args(func, name, values, table_name, table, rows):
    """What every row kernel checks before it writes (see ``deepdist._core._check_row_args``)."""
    if values.shape != (rows.shape[0], table.shape[1]):
        raise ValueError(f"{func}: {name} has shape ({values.shape[0]}, {values.shape[1]}), "
                         f"expected (len(rows), {table_name}.shape[1]) = ({rows.shape[0]}, {table.shape[1]})")
    bad = np.flatnonzero((rows < 0) | (rows >= table.shape[0]))
    if bad.size:
        i = int(bad[0])
        raise IndexError(f"{func}: rows[{i}] = {rows[i]} is out of bounds for an array "
                         f"with {table.shape[0]} rows; nothing was written")


def axpy(dst, src, alpha=1.0):
    """dst += alpha * src, in place (see ``deepdist._core.axpy``)."""
    _wire_dtypes("axpy", "dst", dst, "src", src)
    _check_apart("axpy", "dst", dst, "src", src)
    dst, src = _view(dst, 1, writable=True), _view(src, 1)
    if src.shape[0] != dst.shape[0]:
        raise ValueError(f"axpy: dst has {dst.shape[0]} elements but src has {src.shape[0]}")
    alpha = dst.dtype.type(float(alpha))  # float(): None or a string is a TypeError, as in _core
    src = src.astype(dst.dtype, copy=False)  # float16 widens exactly
    # Skips a temporary as large as src; 1 * x == x, so the result is the same.
    if alpha == 1:
        dst += src
    else:
        dst += alpha * src


def scatter_add(dst, rows, src, alpha=1.0):
    """dst[rows[i], :] += alpha * src[i, :] for each i (see ``deepdist._core.scatter_add``)."""
    _check_rows("scatter_add", rows)
    _wire_dtypes("scatter_add", "dst", dst, "src", src)
    _check_apart("scatter_add", "dst", dst, "src", src)
    dst, rows, src = _view(dst, 2, writable=True), _view(rows, 1), _view(src, 2)
    _check_row_args("scatter_add", "src", src, "dst", dst, rows)
    np.add.at(dst, rows, dst.dtype.type(float(alpha)) * src.astype(dst.dtype, copy=False))


def gather(src, rows, out):
    """out[i, :] = src[rows[i], :] for each i (see ``deepdist._core.gather``)."""
    _check_rows("gather", rows)
    _wire_dtypes("gather", "src", src, "out", out)
    _check_apart("gather", "out", out, "src", src)
    src, rows, out = _view(src, 2), _view(rows, 1), _view(out, 2, writable=True)
    _check_row_args("gather", "out", out, "src", src, rows)
    if out.dtype == src.dtype:
        np.take(src, rows, axis=0, out=out)
    else:  # float32 rows to float16, rounded as narrow rounds
        with np.errstate(over="ignore"):
            out[...] = np.take(src, rows, axis=0)


def scatter(dst, rows, src):
    """dst[rows[i], :] = src[i, :] for each i (see ``deepdist._core.scatter``)."""
    _check_rows("scatter", rows)
    _same_float_dtype("scatter", "dst", dst, "src", src)
    _check_apart("scatter", "dst", dst, "src", src)
    dst, rows, src = _view(dst, 2, writable=True), _view(rows, 1), _view(src, 2)
    _check_row_args("scatter", "src", src, "dst", dst, rows)
    # numpy leaves unspecified which source of a repeated row a fancy assignment keeps: pick the last.
    distinct, first_from_end = np.unique(rows[::-1], return_index=True)
    dst[distinct] = src[len(rows) - 1 - first_from_end]


def index_words(sentences, key_to_index, size):
    """The indexes of the known words and each sentence's end among them (see ``deepdist._core.index_words``)."""
    if type(key_to_index) is not dict:
        raise TypeError(f"index_words: key_to_index must be a dict, got {type(key_to_index).__name__}")
    if type(sentences) is not list:
        raise TypeError(f"index_words: sentences must be a list of lists, got {type(sentences).__name__}")
    if not 0 <= size <= 1 << 32:
        raise ValueError(f"index_words: a vocabulary of {size} words has no uint32 indexes")
    indexes, ends = [], []
    for sentence in sentences:
        if type(sentence) is not list:
            raise TypeError(f"index_words: each sentence must be a list, got {type(sentence).__name__}")
    for sentence in sentences:
        for word in sentence:
            index = key_to_index.get(word)
            if index is None:
                continue
            index = operator.index(index)  # an integer, as _core converts it
            if not 0 <= index < size:
                raise IndexError(f"index_words: word {word!r} has index {index}, outside the vocabulary of {size}")
            indexes.append(index)
        ends.append(len(indexes))
    return np.array(indexes, np.uint32), np.array(ends, np.int64)


def first_row_outside(rows, lo, hi):
    """The position of the first of the int64 ``rows`` outside [lo, hi), or -1 if none is."""
    _check_rows("first_row_outside", rows)
    rows = _view(rows, 1)
    lo, hi = operator.index(lo), operator.index(hi)
    if not 0 <= lo <= hi < 2 ** 63:
        raise ValueError(f"first_row_outside: need 0 <= lo <= hi < 2**63, got lo={lo} hi={hi}")
    outside = np.flatnonzero((rows < lo) | (rows >= hi))
    return int(outside[0]) if len(outside) else -1


def ascending(rows):
    """Whether the int64 ``rows`` (1-D contiguous) never go down."""
    _check_rows("ascending", rows)
    rows = _view(rows, 1)
    return bool(np.all(rows[1:] >= rows[:-1]))


def nonzero_rows(src):
    """Ascending int64 indices of the rows of 2-D src holding any element != 0."""
    _float_dtype("nonzero_rows", "src", src)
    src = _view(src, 2)
    return np.flatnonzero(np.any(src != 0, axis=1)).astype(np.int64, copy=False)


def _conversion_views(func, src, src_dtype, out, out_dtype):
    """src and out as 1-D contiguous views (out writable) of the dtypes a conversion takes, and of one length."""
    if np.asarray(src).dtype != src_dtype or np.asarray(out).dtype != out_dtype:
        raise TypeError(f"{func}: src must be {src_dtype} and out {out_dtype}, got {np.asarray(src).dtype} and "
                        f"{np.asarray(out).dtype}")
    _check_apart(func, "out", out, "src", src)
    src, out = _view(src, 1), _view(out, 1, writable=True)
    if src.shape[0] != out.shape[0]:
        raise ValueError(f"{func}: src has {src.shape[0]} elements but out has {out.shape[0]}")
    return src, out


def narrow(src, out):
    """out[i] = src[i] rounded to the nearest float16 (ties to even; past +-65504 +-inf; NaN stays NaN), for
    float32 src and float16 out, 1-D contiguous and of one length."""
    src, out = _conversion_views("narrow", src, _SINGLE, out, _HALF)
    with np.errstate(over="ignore"):
        out[...] = src


def widen(src, out):
    """out[i] = src[i], exactly, for float16 src and float32 out, 1-D contiguous and of one length."""
    src, out = _conversion_views("widen", src, _HALF, out, _SINGLE)
    out[...] = src


def max_abs(src):
    """The largest |x| over 1-D contiguous src (0.0 if empty): NaN if any is NaN, else inf if any is +-inf.
    src is float32, float64 or float16."""
    if np.asarray(src).dtype != _HALF:
        _float_dtype("max_abs", "src", src)
    src = _view(src, 1)
    return float(np.max(np.abs(src))) if len(src) else 0.0
