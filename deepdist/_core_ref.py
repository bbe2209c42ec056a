"""NumPy twin of ``deepdist._core``: same functions, signatures, exceptions and results.

It is the oracle the tests hold the compiled kernels to, and the fallback
``deepdist.kernels`` selects when ``DEEPDIST_PURE_PYTHON=1``.  So that code
behaves the same on either, it also rejects what the compiled kernels cannot
take (a typed memoryview ``floating[::1]`` / ``floating[:, ::1]`` requires a
C-contiguous buffer of exactly that many dimensions, and a writable one for
outputs), with the ValueError messages Cython uses for those.
"""
import numpy as np

__all__ = ["ascending", "axpy", "first_row_outside", "gather", "index_words", "max_abs", "nonzero_rows", "scatter",
           "scatter_add"]

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


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


def _check_rows(func, rows):
    dtype = np.asarray(rows).dtype
    if dtype != np.int64:
        raise TypeError(f"{func}: rows must be int64, got {dtype}")


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
    _same_float_dtype("axpy", "dst", dst, "src", src)
    dst, src = _view(dst, 1, writable=True), _view(src, 1)
    if src.shape[0] != dst.shape[0]:
        raise ValueError(f"axpy: dst has {dst.shape[0]} elements but src has {src.shape[0]}")
    alpha = dst.dtype.type(alpha)
    # Skips a temporary as large as src; 1 * x == x, so the result is the same.
    if alpha == 1:
        dst += src
    else:
        dst += alpha * src


def scatter_add(dst, rows, src, alpha=1.0):
    """dst[rows[i], :] += alpha * src[i, :] for each i (see ``deepdist._core.scatter_add``)."""
    _check_rows("scatter_add", rows)
    _same_float_dtype("scatter_add", "dst", dst, "src", src)
    dst, rows, src = _view(dst, 2, writable=True), _view(rows, 1), _view(src, 2)
    _check_row_args("scatter_add", "src", src, "dst", dst, rows)
    np.add.at(dst, rows, dst.dtype.type(alpha) * src)


def gather(src, rows, out):
    """out[i, :] = src[rows[i], :] for each i (see ``deepdist._core.gather``)."""
    _check_rows("gather", rows)
    _same_float_dtype("gather", "src", src, "out", out)
    src, rows, out = _view(src, 2), _view(rows, 1), _view(out, 2, writable=True)
    _check_row_args("gather", "out", out, "src", src, rows)
    np.take(src, rows, axis=0, out=out)


def scatter(dst, rows, src):
    """dst[rows[i], :] = src[i, :] for each i (see ``deepdist._core.scatter``)."""
    _check_rows("scatter", rows)
    _same_float_dtype("scatter", "dst", dst, "src", src)
    dst, rows, src = _view(dst, 2, writable=True), _view(rows, 1), _view(src, 2)
    _check_row_args("scatter", "src", src, "dst", dst, rows)
    # numpy leaves unspecified which source of a repeated row a fancy assignment keeps: pick the last.
    distinct, first_from_end = np.unique(rows[::-1], return_index=True)
    dst[distinct] = src[len(rows) - 1 - first_from_end]


def index_words(sentences, key_to_index, size):
    """The indexes of the known words and each sentence's end among them (see ``deepdist._core.index_words``)."""
    if not isinstance(key_to_index, dict):
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
            if not 0 <= index < size:
                raise IndexError(f"index_words: word {word!r} has index {index}, outside the vocabulary of {size}")
            indexes.append(index)
        ends.append(len(indexes))
    return np.array(indexes, np.uint32), np.array(ends, np.int64)


def first_row_outside(rows, lo, hi):
    """The position of the first of the int64 ``rows`` outside [lo, hi), or -1 if none is."""
    _check_rows("first_row_outside", rows)
    rows = _view(rows, 1)
    if not 0 <= lo <= hi:
        raise ValueError(f"first_row_outside: need 0 <= lo <= hi, got lo={lo} hi={hi}")
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


def max_abs(src):
    """The largest |x| over 1-D contiguous src (0.0 if empty): NaN if any is NaN, else inf if any is +-inf."""
    _float_dtype("max_abs", "src", src)
    src = _view(src, 1)
    return float(np.max(np.abs(src))) if len(src) else 0.0
