"""The compiled kernels (deepdist._core) and their NumPy twin (deepdist._core_ref):
hand-computed results, agreement with each other, and the same exceptions."""
import collections
import importlib
import importlib.util
import math
import os

import numpy as np
import pytest


# A missing build fails the Cython cases rather than skipping them, unless the
# run asked for the NumPy kernels only.
needs_core = pytest.mark.skipif(
    os.environ.get("DEEPDIST_PURE_PYTHON") == "1" and importlib.util.find_spec("deepdist._core") is None,
    reason="DEEPDIST_PURE_PYTHON=1 and deepdist._core is not built")


@pytest.fixture(params=[pytest.param("deepdist._core_ref", id="numpy"),
                        pytest.param("deepdist._core", id="cython", marks=needs_core)])
def impl(request):
    return importlib.import_module(request.param)


@pytest.fixture
def ref():
    return importlib.import_module("deepdist._core_ref")


@pytest.fixture(params=[pytest.param("deepdist._core", marks=needs_core)])
def core(request):
    return importlib.import_module(request.param)


@pytest.fixture(params=[pytest.param(None, id="numpy"),
                        pytest.param(True, id="cython-f16c", marks=needs_core),
                        pytest.param(False, id="cython-portable", marks=needs_core)])
def half_impl(request):
    """The implementations of the half-precision wire (narrow, widen, float16 in axpy, scatter_add and
    gather): the twin, and the compiled module on each of its loops, F16C (skipped where the CPU has none)
    and portable C (which otherwise runs only for loop tails and on CPUs without F16C)."""
    if request.param is None:
        yield importlib.import_module("deepdist._core_ref")
        return
    core = importlib.import_module("deepdist._core")
    try:
        if core._use_f16c(request.param) != request.param:
            pytest.skip("this CPU has no F16C")
        yield core
    finally:
        core._use_f16c(True)


@pytest.fixture(params=[np.float32, np.float64], ids=["f32", "f64"])
def dtype(request):
    return request.param


@pytest.fixture(params=[np.float16, np.float32, np.float64], ids=["f16", "f32", "f64"])
def any_float(request):
    """What max_abs takes: the parameter dtypes and the wire's float16."""
    return request.param


def other(dtype):
    return np.float64 if dtype == np.float32 else np.float32


def rows(*values):
    return np.array(values, dtype=np.int64)


def unaligned_writable(values):
    """A copy of values that starts one byte past an aligned address (not empty: an empty one counts as
    aligned)."""
    values = np.ascontiguousarray(values)
    buf = bytearray(values.nbytes + 1)
    out = np.frombuffer(buf, values.dtype, offset=1, count=values.size).reshape(values.shape)
    out[...] = values
    assert not out.flags.aligned and out.flags.writeable
    return out


def unaligned_readonly(values):
    """A read-only copy of values that starts one byte past an aligned address."""
    out = unaligned_writable(values)
    out.setflags(write=False)
    return out


def assert_same_floats(actual, expected):
    """Equal bit for bit (so -0.0 is not 0.0), except that a NaN need only be a NaN: its sign and payload
    may differ."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    nan = np.isnan(expected)
    np.testing.assert_array_equal(np.isnan(actual), nan)
    bits = np.dtype(f"u{expected.itemsize}")
    np.testing.assert_array_equal(actual[~nan].view(bits), expected[~nan].view(bits))


def as_float16(values):
    """values rounded to float16 by numpy, without the warning for the ones that overflow to inf."""
    with np.errstate(over="ignore", invalid="ignore"):
        return np.asarray(values, np.float32).astype(np.float16)


# --- axpy -------------------------------------------------------------------

@pytest.mark.parametrize("alpha", [1.0, -0.05, 0.0])
def test_axpy_matches_hand_computed_and_numpy(impl, dtype, alpha):
    dst = np.arange(37, dtype=dtype)
    src = np.linspace(-3, 5, 37).astype(dtype)
    expected = dst + dtype(alpha) * src
    impl.axpy(dst, src, alpha)
    # Bitwise: float32 rounding of alpha and of each step must match numpy's.
    np.testing.assert_array_equal(dst, expected)
    assert dst.dtype == dtype


def test_axpy_hand_values(impl, dtype):
    dst = np.array([1, 2, 3], dtype=dtype)
    impl.axpy(dst, np.array([10, 20, 30], dtype=dtype), 0.5)
    np.testing.assert_array_equal(dst, [6, 12, 18])
    impl.axpy(dst, np.array([1, 1, 1], dtype=dtype))
    np.testing.assert_array_equal(dst, [7, 13, 19])


def test_axpy_empty(impl, dtype):
    dst = np.ones(0, dtype)
    impl.axpy(dst, np.ones(0, dtype))
    assert dst.shape == (0,)


def test_axpy_length_mismatch(impl, dtype):
    dst = np.zeros(4, dtype)
    with pytest.raises(ValueError, match="4 elements but src has 3"):
        impl.axpy(dst, np.ones(3, dtype))
    np.testing.assert_array_equal(dst, 0)


def test_axpy_dtype_mismatch(impl, dtype):
    with pytest.raises(TypeError, match="same dtype"):
        impl.axpy(np.zeros(4, dtype), np.ones(4, other(dtype)))


def test_axpy_rejects_non_float_and_bad_layout(impl, dtype):
    with pytest.raises(TypeError, match="float32 or float64"):
        impl.axpy(np.zeros(4, np.int32), np.ones(4, np.int32))
    with pytest.raises(ValueError):
        impl.axpy(np.zeros((2, 2), dtype), np.ones((2, 2), dtype))
    with pytest.raises(ValueError):
        impl.axpy(np.zeros(8, dtype)[::2], np.ones(4, dtype))
    readonly = np.zeros(4, dtype)
    readonly.setflags(write=False)
    with pytest.raises(ValueError):
        impl.axpy(readonly, np.ones(4, dtype))


def test_axpy_large_matches_twin(core, ref, dtype):
    rng = np.random.default_rng(1)
    src = rng.standard_normal(100_003).astype(dtype)
    a = rng.standard_normal(100_003).astype(dtype)
    b = a.copy()
    core.axpy(a, src, -0.05)
    ref.axpy(b, src, -0.05)
    np.testing.assert_array_equal(a, b)


# --- scatter_add --------------------------------------------------------------

def test_scatter_add_repeated_rows_accumulate(impl):
    # Integer-valued float64 sums are exact, so the expectation is exact too.
    dst = np.arange(12, dtype=np.float64).reshape(4, 3)
    src = np.array([[1, 2, 3], [10, 20, 30], [100, 200, 300], [5, 5, 5]], dtype=np.float64)
    impl.scatter_add(dst, rows(2, 0, 2, 2), src, 2.0)
    np.testing.assert_array_equal(dst, [[20, 41, 62],
                                        [3, 4, 5],
                                        [6 + 2 * 106, 7 + 2 * 207, 8 + 2 * 308],
                                        [9, 10, 11]])


@pytest.mark.parametrize("alpha", [1.0, -0.05])
def test_scatter_add_matches_add_at(impl, dtype, alpha):
    rng = np.random.default_rng(2)
    dst = rng.standard_normal((50, 7)).astype(dtype)
    idx = rng.integers(0, 50, 300)
    src = rng.standard_normal((300, 7)).astype(dtype)
    expected = dst.copy()
    np.add.at(expected, idx, dtype(alpha) * src)
    impl.scatter_add(dst, idx, src, alpha)
    np.testing.assert_array_equal(dst, expected)


def test_scatter_add_empty_rows(impl, dtype):
    dst = np.ones((3, 2), dtype)
    impl.scatter_add(dst, rows(), np.zeros((0, 2), dtype))
    np.testing.assert_array_equal(dst, 1)


@pytest.mark.parametrize("bad", [-1, 3, 1000])
def test_scatter_add_out_of_range_writes_nothing(impl, dtype, bad):
    dst = np.zeros((3, 2), dtype)
    with pytest.raises(IndexError, match=rf"rows\[2\] = {bad}"):
        impl.scatter_add(dst, rows(0, 1, bad, 2), np.ones((4, 2), dtype))
    np.testing.assert_array_equal(dst, 0)


def test_scatter_add_shape_mismatch(impl, dtype):
    dst = np.zeros((3, 2), dtype)
    with pytest.raises(ValueError, match="src has shape"):
        impl.scatter_add(dst, rows(0, 1), np.ones((2, 3), dtype))
    with pytest.raises(ValueError, match="src has shape"):
        impl.scatter_add(dst, rows(0, 1), np.ones((3, 2), dtype))
    np.testing.assert_array_equal(dst, 0)


def test_scatter_add_dtype_mismatch(impl, dtype):
    dst = np.zeros((3, 2), dtype)
    with pytest.raises(TypeError, match="same dtype"):
        impl.scatter_add(dst, rows(0), np.ones((1, 2), other(dtype)))
    with pytest.raises(TypeError, match="rows must be int64"):
        impl.scatter_add(dst, np.array([0], np.int32), np.ones((1, 2), dtype))
    np.testing.assert_array_equal(dst, 0)


def test_scatter_add_single_column_view(impl, dtype):
    # How callers update a 1-D parameter: viewed as (n, 1).
    param = np.zeros(5, dtype)
    impl.scatter_add(param.reshape(-1, 1), rows(4, 0, 4), np.array([[1], [2], [3]], dtype))
    np.testing.assert_array_equal(param, [2, 0, 0, 0, 4])


# --- gather -------------------------------------------------------------------

def test_gather(impl, dtype):
    src = np.arange(12, dtype=dtype).reshape(4, 3)
    out = np.full((5, 3), -1, dtype)
    impl.gather(src, rows(3, 0, 3, 1, 2), out)
    np.testing.assert_array_equal(out, [[9, 10, 11], [0, 1, 2], [9, 10, 11], [3, 4, 5], [6, 7, 8]])


def test_gather_matches_take(impl, dtype):
    rng = np.random.default_rng(3)
    src = rng.standard_normal((100, 9)).astype(dtype)
    idx = rng.integers(0, 100, 250)
    out = np.empty((250, 9), dtype)
    impl.gather(src, idx, out)
    np.testing.assert_array_equal(out, src[idx])


def test_gather_empty(impl, dtype):
    """No rows: nothing to copy, but out's shape is still checked (a caller's bug shows on the empty case)."""
    src = np.ones((2, 3), dtype)
    impl.gather(src, rows(), np.zeros((0, 3), dtype))
    for wrong in (np.zeros((0, 2), dtype), np.zeros((1, 3), dtype)):
        with pytest.raises(ValueError, match="out has shape"):
            impl.gather(src, rows(), wrong)
    np.testing.assert_array_equal(src, 1)


@pytest.mark.parametrize("bad", [-1, 4])
def test_gather_out_of_range_writes_nothing(impl, dtype, bad):
    out = np.full((2, 3), 7, dtype)
    with pytest.raises(IndexError, match=rf"rows\[1\] = {bad}"):
        impl.gather(np.ones((4, 3), dtype), rows(0, bad), out)
    np.testing.assert_array_equal(out, 7)


def test_gather_shape_and_dtype_mismatch(impl, dtype):
    with pytest.raises(ValueError, match="out has shape"):
        impl.gather(np.ones((4, 3), dtype), rows(0, 1), np.zeros((2, 2), dtype))
    with pytest.raises(ValueError, match="out has shape"):
        impl.gather(np.ones((4, 3), dtype), rows(0, 1), np.zeros((3, 3), dtype))
    with pytest.raises(TypeError, match="same dtype"):
        impl.gather(np.ones((4, 3), dtype), rows(0, 1), np.zeros((2, 3), other(dtype)))


# --- scatter ------------------------------------------------------------------

def test_scatter(impl, dtype):
    dst = np.full((4, 3), -1, dtype)
    impl.scatter(dst, rows(3, 0), np.arange(6, dtype=dtype).reshape(2, 3))
    np.testing.assert_array_equal(dst, [[3, 4, 5], [-1, -1, -1], [-1, -1, -1], [0, 1, 2]])


def test_scatter_repeated_row_keeps_the_last(impl, dtype):
    dst = np.zeros((3, 2), dtype)
    impl.scatter(dst, rows(1, 2, 1, 1, 2), np.arange(10, dtype=dtype).reshape(5, 2))
    np.testing.assert_array_equal(dst, [[0, 0], [6, 7], [8, 9]])


def test_scatter_undoes_gather(impl, dtype):
    rng = np.random.default_rng(5)
    src = rng.standard_normal((100, 9)).astype(dtype)
    idx = rng.permutation(100)[:60]
    picked = np.empty((60, 9), dtype)
    impl.gather(src, idx, picked)
    dst = np.zeros_like(src)
    impl.scatter(dst, idx, picked)
    np.testing.assert_array_equal(dst[idx], src[idx])
    np.testing.assert_array_equal(np.delete(dst, idx, axis=0), 0)


@pytest.mark.parametrize("bad", [-1, 4])
def test_scatter_out_of_range_writes_nothing(impl, dtype, bad):
    dst = np.full((4, 3), 7, dtype)
    with pytest.raises(IndexError, match=rf"rows\[1\] = {bad}"):
        impl.scatter(dst, rows(0, bad), np.ones((2, 3), dtype))
    np.testing.assert_array_equal(dst, 7)


def test_scatter_shape_dtype_and_read_only(impl, dtype):
    dst = np.zeros((4, 3), dtype)
    with pytest.raises(ValueError, match="src has shape"):
        impl.scatter(dst, rows(0, 1), np.ones((2, 2), dtype))
    with pytest.raises(ValueError, match="src has shape"):
        impl.scatter(dst, rows(0, 1), np.ones((3, 3), dtype))
    with pytest.raises(TypeError, match="same dtype"):
        impl.scatter(dst, rows(0, 1), np.ones((2, 3), other(dtype)))
    with pytest.raises(TypeError, match="rows must be int64"):
        impl.scatter(dst, np.array([0], np.int32), np.ones((1, 3), dtype))
    read_only = np.zeros((4, 3), dtype)
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        impl.scatter(read_only, rows(0), np.ones((1, 3), dtype))
    np.testing.assert_array_equal(dst, 0)
    impl.scatter(dst, rows(), np.ones((0, 3), dtype))  # nothing to do
    np.testing.assert_array_equal(dst, 0)


# --- index_words ---------------------------------------------------------------

def test_index_words(impl):
    indexes, ends = impl.index_words([["the", "cat", "unknown"], [], ["cat", "sat"], ["unknown"]],
                                     {"the": 0, "cat": 3, "sat": 1, "mat": 2}, 6)
    assert indexes.dtype == np.uint32 and ends.dtype == np.int64
    np.testing.assert_array_equal(indexes, [0, 3, 3, 1])
    np.testing.assert_array_equal(ends, [2, 2, 4, 4])


def test_index_words_matches_lookups_one_by_one(impl):
    rng = np.random.default_rng(4)
    vocabulary = {f"w{i}": int(j) for i, j in enumerate(rng.permutation(500))}
    sentences = [[f"w{k}" for k in rng.integers(0, 700, rng.integers(0, 40))] for _ in range(200)]
    indexes, ends = impl.index_words(sentences, vocabulary, 500)
    expected = [[vocabulary[w] for w in s if w in vocabulary] for s in sentences]
    np.testing.assert_array_equal(indexes, [i for s in expected for i in s])
    np.testing.assert_array_equal(ends, np.cumsum([len(s) for s in expected]))


def test_index_words_bad_input(impl):
    with pytest.raises(IndexError, match="'b' has index 3, outside the vocabulary of 3"):
        impl.index_words([["a", "b"]], {"a": 0, "b": 3}, 3)
    with pytest.raises(IndexError, match="'b' has index -1"):
        impl.index_words([["b"]], {"b": -1}, 3)
    with pytest.raises(TypeError, match="each sentence must be a list"):
        impl.index_words([["a"], ("a",)], {"a": 0}, 3)
    with pytest.raises(TypeError, match="sentences must be a list"):
        impl.index_words(iter([["a"]]), {"a": 0}, 3)
    with pytest.raises(TypeError, match="dict"):
        impl.index_words([["a"]], [("a", 0)], 3)
    with pytest.raises(ValueError, match="no uint32 indexes"):
        impl.index_words([["a"]], {"a": 0}, (1 << 32) + 1)
    with pytest.raises(TypeError, match="dict|NoneType"):
        impl.index_words([["a"]], None, 3)
    with pytest.raises(TypeError, match="dict"):
        impl.index_words([["a"]], collections.OrderedDict(a=0), 3)  # exactly a dict, as gensim's is
    with pytest.raises(TypeError, match="unhashable"):
        impl.index_words([["a", ["b"]]], {"a": 0}, 3)  # a word that is no key at all, not skipped
    with pytest.raises(TypeError):
        impl.index_words([["a"]], {"a": 1.0}, 3)  # an index must be an integer


def test_index_words_refuses_sentences_that_change_while_it_reads_them(core):
    """A lookup can run Python code (a value's __index__); should it grow or shrink the lists, the compiled
    loop raises instead of writing past the result or reading past a list."""
    later = ["a"]

    class Grows:
        def __index__(self):
            later.extend(["a"] * 100_000)
            return 0

    with pytest.raises(RuntimeError, match="sentences changed"):
        core.index_words([["grow"], later], {"grow": Grows(), "a": 0}, 10)
    sentences = [["shrink"], ["a"] * 10, ["a"] * 10]

    class Shrinks:
        def __index__(self):
            del sentences[1:]
            return 0

    with pytest.raises(RuntimeError, match="sentences changed"):
        core.index_words(sentences, {"shrink": Shrinks(), "a": 0}, 10)


# --- ascending -----------------------------------------------------------------
@pytest.mark.parametrize("values, expected", [
    ((), True),
    ((7,), True),
    ((1, 1, 2, 9), True),                   # repeats do not go down
    ((1, 2, 9, 8), False),                  # only the last pair
    ((3, 1, 2), False),                     # only the first pair
    ((-2**63, 0, 2**63 - 1), True),         # the int64 extremes: no overflow in the comparison
    ((2**63 - 1, -2**63), False),
])
def test_ascending(impl, values, expected):
    assert impl.ascending(rows(*values)) is expected


def test_ascending_unaligned_readonly_and_bad_input(impl):
    assert impl.ascending(unaligned_readonly(rows(3, 4, 12))) is True
    assert impl.ascending(unaligned_readonly(rows(3, 12, 4))) is False
    with pytest.raises(TypeError, match="int64"):
        impl.ascending(np.array([1, 2], np.int32))


def test_ascending_matches_twin(core, ref):
    values = np.sort(np.random.default_rng(4).integers(0, 10**6, 100_000)).astype(np.int64)
    assert core.ascending(values) is ref.ascending(values) is True
    for where in (1, 50_000, len(values) - 1):  # one step down, at the start, the middle, the end
        broken = values.copy()
        broken[where] = broken[where - 1] - 1
        assert core.ascending(broken) is ref.ascending(broken) is False


# --- first_row_outside -------------------------------------------------------
@pytest.mark.parametrize("values, lo, hi, expected", [
    ((5, 6, 9), 5, 10, -1),                 # both ends of the range inside
    ((5, 10, 6), 5, 10, 1),                 # hi itself is outside
    ((7, 4), 5, 10, 1),                     # just below lo
    ((7, -1, 99), 5, 10, 1),                # negative
    ((-2**63, 7), 0, 10, 0),                # the most negative int64: no wrap-around into the range
    ((2**63 - 1,), 0, 10, 0),
    ((), 5, 10, -1),
    ((5,), 5, 5, 0),                        # an empty range holds nothing
])
def test_first_row_outside(impl, values, lo, hi, expected):
    assert impl.first_row_outside(rows(*values), lo, hi) == expected


def test_first_row_outside_unaligned_readonly(impl):
    # As a shard calls it: on a received frame, at any address, read-only.
    assert impl.first_row_outside(unaligned_readonly(rows(3, 4, 12, 5)), 3, 12) == 2


def test_first_row_outside_rejects_bad_input(impl):
    with pytest.raises(TypeError, match="int64"):
        impl.first_row_outside(np.array([1, 2], np.int32), 0, 5)
    with pytest.raises(ValueError, match="lo <= hi"):
        impl.first_row_outside(rows(1), 5, 4)
    with pytest.raises(ValueError, match="lo <= hi"):
        impl.first_row_outside(rows(1), -1, 4)
    with pytest.raises(ValueError, match="hi < 2[*][*]63"):
        impl.first_row_outside(rows(1), 0, 2**63)
    with pytest.raises(TypeError):
        impl.first_row_outside(rows(1), 1.5, 3)  # not truncated to 1


@pytest.mark.parametrize("call", [
    lambda k, a: k.axpy(a[1:], a[:-1]),
    lambda k, a: k.scatter_add(a.reshape(8, 2), np.array([1, 0]), a.reshape(8, 2)[:2]),
    lambda k, a: k.gather(a.reshape(8, 2), np.array([1, 0]), a.reshape(8, 2)[:2]),
    lambda k, a: k.scatter(a.reshape(8, 2), np.array([1, 2]), a.reshape(8, 2)[:2]),
    lambda k, a: k.widen(a.view(np.float16)[8:16], a[4:12]),
    lambda k, a: k.narrow(a[:4], a.view(np.float16)[:4]),
], ids=["axpy", "scatter_add", "gather", "scatter", "widen", "narrow"])
def test_an_output_that_shares_memory_with_an_input_is_refused(impl, call):
    """The loops read the input as they write the output: overlapping buffers would give results that depend
    on the loop. Both implementations refuse them, and write nothing."""
    a = np.arange(16, dtype=np.float32)
    with pytest.raises(ValueError, match="share memory"):
        call(impl, a)
    np.testing.assert_array_equal(a, np.arange(16, dtype=np.float32))


def test_first_row_outside_matches_twin(core, ref):
    values = np.random.default_rng(3).integers(-50, 2000, 100_000).astype(np.int64)
    for lo, hi in ((0, 2000), (-0, 1000), (500, 1500), (0, 0)):
        assert core.first_row_outside(values, lo, hi) == ref.first_row_outside(values, lo, hi)
    inside = np.clip(values, 0, 1999)
    assert core.first_row_outside(inside, 0, 2000) == ref.first_row_outside(inside, 0, 2000) == -1


# --- nonzero_rows -------------------------------------------------------------

def test_nonzero_rows_special_values(impl, dtype):
    src = np.zeros((6, 4), dtype)
    src[1, 3] = np.nan       # NaN counts as non-zero
    src[2, :] = -0.0         # -0.0 counts as zero
    src[3, 0] = -np.finfo(dtype).smallest_subnormal  # tiny, still non-zero
    src[5, 2] = np.inf
    result = impl.nonzero_rows(src)
    np.testing.assert_array_equal(result, [1, 3, 5])
    assert result.dtype == np.int64


def test_nonzero_rows_all_zero_and_all_nonzero(impl, dtype):
    assert impl.nonzero_rows(np.zeros((5, 3), dtype)).tolist() == []
    assert impl.nonzero_rows(np.full((5, 3), -0.0, dtype)).tolist() == []
    assert impl.nonzero_rows(np.ones((5, 3), dtype)).tolist() == [0, 1, 2, 3, 4]


def test_nonzero_rows_single_row_and_single_column(impl, dtype):
    assert impl.nonzero_rows(np.array([[0, 0, 2]], dtype)).tolist() == [0]
    assert impl.nonzero_rows(np.array([[0, 0, 0]], dtype)).tolist() == []
    assert impl.nonzero_rows(np.array([[0], [3], [0], [-0.0], [1]], dtype)).tolist() == [1, 4]
    assert impl.nonzero_rows(np.zeros((0, 3), dtype)).tolist() == []


def test_nonzero_rows_matches_twin(core, ref, dtype):
    rng = np.random.default_rng(4)
    src = rng.standard_normal((1000, 33)).astype(dtype)
    src[rng.random(1000) < 0.8] = 0
    src[rng.integers(0, 1000, 20), rng.integers(0, 33, 20)] = np.nan
    np.testing.assert_array_equal(core.nonzero_rows(src), ref.nonzero_rows(src))


def test_nonzero_rows_rejects_1d(impl, dtype):
    with pytest.raises(ValueError):
        impl.nonzero_rows(np.ones(3, dtype))


# --- max_abs ------------------------------------------------------------------

@pytest.mark.parametrize("where", [0, 4095, 4096, -1])
def test_max_abs_finds_the_largest_magnitude(impl, any_float, where):
    src = np.random.default_rng(6).uniform(-1, 1, 10_001).astype(any_float)
    src[where] = -7.25
    assert impl.max_abs(src) == 7.25
    src[where] = 7.5
    assert impl.max_abs(src) == 7.5


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
@pytest.mark.parametrize("where", [0, 4096, -1])
def test_max_abs_is_not_finite_exactly_when_a_value_is_not(impl, any_float, bad, where):
    src = np.ones(10_001, any_float)
    src[where] = bad
    result = impl.max_abs(src)
    assert math.isnan(result) if np.isnan(bad) else result == math.inf
    src[-2] = np.nan  # NaN wins over infinity, wherever it is
    assert math.isnan(impl.max_abs(src))


def test_max_abs_extremes(impl, any_float):
    info = np.finfo(any_float)
    src = np.array([info.tiny, -info.max, info.smallest_subnormal, -0.0, 0.0], any_float)
    assert impl.max_abs(src) == float(info.max)
    assert impl.max_abs(np.array([-0.0, info.smallest_subnormal], any_float)) == float(info.smallest_subnormal)
    assert impl.max_abs(np.array([-0.0], any_float)) == 0.0
    assert impl.max_abs(np.ones(0, any_float)) == 0.0


def test_max_abs_rejects_non_float(impl):
    with pytest.raises(TypeError, match="float32 or float64"):
        impl.max_abs(np.ones(3, np.int64))
    with pytest.raises(TypeError, match="float32 or float64, got int16"):  # 16 bits, but not float16
        impl.max_abs(np.ones(3, np.int16))


# --- buffers straight from the wire -------------------------------------------

def test_unaligned_readonly_inputs(impl, dtype):
    rng = np.random.default_rng(5)
    src2 = rng.standard_normal((40, 5)).astype(dtype)
    src1 = src2.reshape(-1)
    idx = rng.integers(0, 40, 40)

    dst = np.ones(src1.size, dtype)
    impl.axpy(dst, unaligned_readonly(src1), -0.05)
    np.testing.assert_array_equal(dst, 1 + dtype(-0.05) * src1)

    table = np.zeros((40, 5), dtype)
    impl.scatter_add(table, unaligned_readonly(idx), unaligned_readonly(src2))
    expected = np.zeros((40, 5), dtype)
    np.add.at(expected, idx, src2)
    np.testing.assert_array_equal(table, expected)

    out = np.empty((40, 5), dtype)
    impl.gather(unaligned_readonly(src2), unaligned_readonly(idx), out)
    np.testing.assert_array_equal(out, src2[idx])

    table = np.zeros((40, 5), dtype)
    distinct = np.unique(idx)
    impl.scatter(table, unaligned_readonly(distinct), unaligned_readonly(src2[:len(distinct)]))
    np.testing.assert_array_equal(table[distinct], src2[:len(distinct)])

    sparse = src2.copy()
    sparse[::3] = 0
    np.testing.assert_array_equal(impl.nonzero_rows(unaligned_readonly(sparse)),
                                  np.flatnonzero(np.any(sparse != 0, axis=1)))
    bad = src1.copy()
    bad[-1] = np.nan
    assert impl.max_abs(unaligned_readonly(src1)) == np.abs(src1).max()
    assert math.isnan(impl.max_abs(unaligned_readonly(bad)))


# --- the half-precision wire: float16 for float32 parameters -------------------

def every_float16():
    """All 65,536 float16 bit patterns, as float16."""
    return np.arange(1 << 16).astype(np.uint16).view(np.float16)


def narrow_edge_cases():
    """float32 values where rounding to float16 goes wrong first, both signs: every finite float16, every
    midpoint between two neighbours (a tie, to even) and the float32 either side of it, at every exponent,
    through the subnormals and up to 65520 (midway to 2**16, which is inf); float32's own extremes, inf and
    NaNs, one of which (0x7f800001) turns into inf if its payload is cut without quieting it."""
    finite = every_float16()[:0x7c00].astype(np.float64)
    above = np.append(finite[1:], 2.0**16)
    midpoints = (finite + above) / 2  # 12 significant bits: exact in float32
    ties = midpoints.astype(np.float32)
    assert np.all(ties == midpoints)
    nans = np.array([0x7fc00000, 0x7f800001, 0x7fa00000, 0x7f802000, 0x7fffffff], np.uint32).view(np.float32)
    specials = np.array([65504, 65519.99, 65520, 65536, 1e5, np.inf, 0.0, 2.0**-25, 2.0**-24, 2.0**-14,
                         np.finfo(np.float32).tiny, np.finfo(np.float32).smallest_subnormal,
                         np.finfo(np.float32).max], np.float32)
    values = np.concatenate([finite.astype(np.float32), ties, np.nextafter(ties, np.float32(np.inf)),
                             np.nextafter(ties, np.float32(0)), specials, nans])
    return np.concatenate([values, -values])


def random_float32_patterns(count, seed):
    """count float32 of random bit patterns: half of them anywhere, half in and around float16's range
    (2**-26 to 2**17), where the rounding is."""
    rng = np.random.default_rng(seed)
    anywhere = rng.integers(0, 1 << 32, count // 2, dtype=np.uint32)
    near = rng.integers(0x32800000, 0x48000000, count - count // 2, dtype=np.uint32)
    near |= rng.integers(0, 2, near.size, dtype=np.uint32) << 31
    return np.concatenate([anywhere, near]).view(np.float32)


@pytest.mark.parametrize("value, expected", [
    (65519.99, 65504.0),                # just under the midpoint to 2**16: the largest float16
    (65520.0, np.inf),                  # the midpoint: to even, which is 2**16, out of range
    (-1e9, -np.inf),
    (2.0**-25, 0.0),                    # half the smallest subnormal: to even, 0
    (np.nextafter(np.float32(2.0**-25), np.float32(1)), 2.0**-24),
    (3 * 2.0**-25, 2.0**-23),           # 1.5 subnormal steps: to even, 2
    (2.0**-14 - 2.0**-25, 2.0**-14),    # midway from the largest subnormal (odd) to the smallest normal
    (1 + 2.0**-11, 1.0),                # half an ulp above 1: to even, 1
    (1 + 3 * 2.0**-11, 1 + 2.0**-9),    # 1.5 ulps: to even, 2 ulps
    (-0.0, -0.0),
])
def test_narrow_hand_values(half_impl, value, expected):
    out = np.full(1, 7, np.float16)
    half_impl.narrow(np.array([value], np.float32), out)
    assert_same_floats(out, np.array([expected], np.float16))


def test_narrow_edge_cases_match_numpy(half_impl):
    src = narrow_edge_cases()
    out = np.full(src.size, 7, np.float16)
    half_impl.narrow(src, out)
    assert_same_floats(out, as_float16(src))
    assert np.isnan(out[-5:]).all()


def test_narrow_random_bit_patterns_match_numpy(half_impl):
    src = random_float32_patterns(3_000_000, seed=8)
    out = np.full(src.size, 7, np.float16)
    half_impl.narrow(src, out)
    assert_same_floats(out, as_float16(src))


def test_widen_every_float16(half_impl):
    src = every_float16()
    out = np.full(src.size, 7, np.float32)
    half_impl.widen(src, out)
    assert_same_floats(out, src.astype(np.float32))


def test_half_loops_agree_bit_for_bit(core):
    """The F16C and the portable loops give the same bits, NaNs included: a value comes out the same
    whichever node, and whichever part of a loop, converted it."""
    if not core._use_f16c(True):
        pytest.skip("this CPU has no F16C")
    wide = random_float32_patterns(1_000_000, seed=9)
    halves = every_float16()
    results = []
    try:
        for f16c in (True, False):
            core._use_f16c(f16c)
            narrowed, widened = np.empty(wide.size, np.float16), np.empty(halves.size, np.float32)
            core.narrow(wide, narrowed)
            core.widen(halves, widened)
            summed = np.ones(halves.size, np.float32)
            core.axpy(summed, halves, -0.05)
            results.append([narrowed.view(np.uint16), widened.view(np.uint32), summed.view(np.uint32)])
    finally:
        core._use_f16c(True)
    for f16c_bits, portable_bits in zip(*results):
        np.testing.assert_array_equal(f16c_bits, portable_bits)


@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 15, 16, 17, 1001])
def test_half_wire_lengths(half_impl, n):
    """Lengths around the F16C loops' 8 elements: the tails are the portable loops, and must be done."""
    rng = np.random.default_rng(n)
    wide = (rng.standard_normal(n) * 1000).astype(np.float32)
    halves = as_float16(wide)
    out = np.full(n, 7, np.float16)
    half_impl.narrow(wide, out)
    assert_same_floats(out, halves)
    out = np.full(n, 7, np.float32)
    half_impl.widen(halves, out)
    assert_same_floats(out, halves.astype(np.float32))
    for alpha in (1.0, -0.05):
        dst = np.arange(n, dtype=np.float32)
        half_impl.axpy(dst, halves, alpha)
        assert_same_floats(dst, np.arange(n, dtype=np.float32) + np.float32(alpha) * halves.astype(np.float32))
    if n:
        halves[-1] = -60000.0  # the largest, in the tail
        assert half_impl.max_abs(halves) == 60000.0
    else:
        assert half_impl.max_abs(halves) == 0.0


def test_axpy_float16_hand_values(half_impl):
    dst = np.array([1, 2, 3], np.float32)
    half_impl.axpy(dst, np.array([0.5, -1.5, 1024], np.float16), 2.0)
    np.testing.assert_array_equal(dst, [2, -1, 2051])
    half_impl.axpy(dst, np.array([0.5, 65504, 2.0**-24], np.float16))
    np.testing.assert_array_equal(dst, [2.5, 65503, 2051])  # 2051 + 2**-24 rounds back to 2051


@pytest.mark.parametrize("alpha", [1.0, -0.05, 0.0])
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # the twin's, on inf * 0 and sNaN
def test_axpy_float16_matches_numpy(half_impl, alpha):
    # Every float16 (inf and NaN included) against random float32: alpha * src rounded to float32, then
    # the sum, as numpy's dst += np.float32(alpha) * src.
    src = every_float16()
    dst = np.random.default_rng(10).standard_normal(src.size).astype(np.float32)
    with np.errstate(invalid="ignore"):
        expected = dst + np.float32(alpha) * src.astype(np.float32)
    half_impl.axpy(dst, src, alpha)
    assert_same_floats(dst, expected)


def test_axpy_float16_large_matches_twin(half_impl, ref):
    if half_impl is ref:
        pytest.skip("the twin against itself")
    rng = np.random.default_rng(11)
    src = as_float16(rng.standard_normal(100_003))
    a = rng.standard_normal(100_003).astype(np.float32)
    b = a.copy()
    half_impl.axpy(a, src, -0.05)
    ref.axpy(b, src, -0.05)
    assert_same_floats(a, b)


def test_scatter_add_float16_repeated_rows_accumulate(half_impl):
    # Small integers and halves: every sum is exact, and so is the expectation.
    dst = np.arange(12, dtype=np.float32).reshape(4, 3)
    src = np.array([[1, 2, 3], [10, 20, 30], [100, 200, 300], [0.5, 0.5, 0.5]], np.float16)
    half_impl.scatter_add(dst, rows(2, 0, 2, 2), src, 2.0)
    np.testing.assert_array_equal(dst, [[20, 41, 62],
                                        [3, 4, 5],
                                        [6 + 2 * 101.5, 7 + 2 * 202.5, 8 + 2 * 303.5],
                                        [9, 10, 11]])


@pytest.mark.parametrize("alpha", [1.0, -0.05])
def test_scatter_add_float16_matches_add_at(half_impl, alpha):
    # Rows of 13: one F16C step and a tail of 5.  Repeated rows round as they accumulate, so the order of
    # the additions shows in the bits.
    rng = np.random.default_rng(12)
    dst = rng.standard_normal((50, 13)).astype(np.float32)
    idx = rng.integers(0, 50, 300)
    src = as_float16(rng.standard_normal((300, 13)))
    expected = dst.copy()
    np.add.at(expected, idx, np.float32(alpha) * src.astype(np.float32))
    half_impl.scatter_add(dst, idx, src, alpha)
    assert_same_floats(dst, expected)


def test_scatter_add_float16_empty(half_impl):
    dst = np.ones((3, 2), np.float32)
    half_impl.scatter_add(dst, rows(), np.zeros((0, 2), np.float16))
    half_impl.scatter_add(np.ones((3, 0), np.float32), rows(0, 2), np.ones((2, 0), np.float16))
    np.testing.assert_array_equal(dst, 1)


@pytest.mark.parametrize("bad", [-1, 3, 1000])
def test_scatter_add_float16_out_of_range_writes_nothing(half_impl, bad):
    dst = np.zeros((3, 9), np.float32)
    with pytest.raises(IndexError, match=rf"rows\[2\] = {bad}"):
        half_impl.scatter_add(dst, rows(0, 1, bad, 2), np.ones((4, 9), np.float16))
    np.testing.assert_array_equal(dst, 0)


def test_scatter_add_float16_shape_mismatch(half_impl):
    dst = np.zeros((3, 2), np.float32)
    with pytest.raises(ValueError, match="src has shape"):
        half_impl.scatter_add(dst, rows(0, 1), np.ones((2, 3), np.float16))
    with pytest.raises(ValueError, match="src has shape"):
        half_impl.scatter_add(dst, rows(0, 1), np.ones((3, 2), np.float16))
    np.testing.assert_array_equal(dst, 0)


def test_gather_float16_out_rounds_as_narrow(half_impl):
    rng = np.random.default_rng(13)
    src = (rng.standard_normal((100, 13)) * 20000).astype(np.float32)
    src[3, :4] = [65519.99, 65520, 2.0**-25, np.nan]
    src[7, 9:] = [-0.0, 3 * 2.0**-25, 1 + 2.0**-11, 1e-9]
    idx = rng.integers(0, 100, 250)
    idx[:2] = [3, 7]
    out = np.full((250, 13), 7, np.float16)
    half_impl.gather(src, idx, out)
    assert_same_floats(out, as_float16(src[idx]))


@pytest.mark.parametrize("bad", [-1, 4])
def test_gather_float16_out_of_range_writes_nothing(half_impl, bad):
    out = np.full((2, 3), 7, np.float16)
    with pytest.raises(IndexError, match=rf"rows\[1\] = {bad}"):
        half_impl.gather(np.ones((4, 3), np.float32), rows(0, bad), out)
    np.testing.assert_array_equal(out, 7)


def test_gather_float16_empty_and_shape_mismatch(half_impl):
    half_impl.gather(np.ones((2, 3), np.float32), rows(), np.zeros((0, 3), np.float16))
    with pytest.raises(ValueError, match="out has shape"):
        half_impl.gather(np.ones((2, 3), np.float32), rows(), np.zeros((0, 2), np.float16))
    with pytest.raises(ValueError, match="out has shape"):
        half_impl.gather(np.ones((4, 3), np.float32), rows(0, 1), np.zeros((2, 2), np.float16))


def test_half_wire_unaligned(half_impl):
    """Every float16 path on frames one byte past an aligned address, read-only where they are read."""
    rng = np.random.default_rng(14)
    wide = (rng.standard_normal(1003) * 1000).astype(np.float32)
    halves = as_float16(wide)

    out = unaligned_writable(np.zeros(wide.size, np.float16))
    half_impl.narrow(unaligned_readonly(wide), out)
    assert_same_floats(out, halves)

    out = unaligned_writable(np.zeros(halves.size, np.float32))
    half_impl.widen(unaligned_readonly(halves), out)
    assert_same_floats(out, halves.astype(np.float32))

    for alpha in (1.0, -0.05):
        dst = unaligned_writable(np.ones(halves.size, np.float32))
        half_impl.axpy(dst, unaligned_readonly(halves), alpha)
        assert_same_floats(dst, 1 + np.float32(alpha) * halves.astype(np.float32))

    table, update = wide[:1001].reshape(77, 13), halves[:1001].reshape(77, 13)
    idx = rng.integers(0, 77, 77)
    dst = unaligned_writable(table)
    half_impl.scatter_add(dst, unaligned_readonly(idx), unaligned_readonly(update), -0.05)
    expected = table.copy()
    np.add.at(expected, idx, np.float32(-0.05) * update.astype(np.float32))
    assert_same_floats(dst, expected)

    out = unaligned_writable(np.zeros((77, 13), np.float16))
    half_impl.gather(unaligned_readonly(table), unaligned_readonly(idx), out)
    assert_same_floats(out, as_float16(table[idx]))

    halves[-2] = np.float16(-65504)
    assert half_impl.max_abs(unaligned_readonly(halves)) == 65504.0
    halves[500] = np.nan
    assert math.isnan(half_impl.max_abs(unaligned_readonly(halves)))


@pytest.mark.parametrize("call, message", [
    (lambda k: k.axpy(np.zeros(4), np.ones(4, np.float16)),
     "axpy: src is float16 but dst is float64; float16 goes only with float32"),
    (lambda k: k.axpy(np.zeros(4, np.float16), np.ones(4, np.float32)),
     "axpy: dst must be float32 or float64, got float16"),
    (lambda k: k.axpy(np.zeros(4, np.float16), np.ones(4, np.float16)),
     "axpy: dst must be float32 or float64, got float16"),
    (lambda k: k.axpy(np.zeros(4, np.int32), np.ones(4, np.float16)),
     "axpy: dst must be float32 or float64, got int32"),
    (lambda k: k.axpy(np.zeros(4, np.float32), np.ones(4, np.uint16)),
     "axpy: src must be float32 or float64, got uint16"),
    (lambda k: k.scatter_add(np.zeros((3, 2)), rows(0), np.ones((1, 2), np.float16)),
     "scatter_add: src is float16 but dst is float64; float16 goes only with float32"),
    (lambda k: k.scatter_add(np.zeros((3, 2), np.float16), rows(0), np.ones((1, 2), np.float32)),
     "scatter_add: dst must be float32 or float64, got float16"),
    (lambda k: k.scatter_add(np.zeros((3, 2), np.float32), np.array([0], np.int32), np.ones((1, 2), np.float16)),
     "scatter_add: rows must be int64, got int32"),
    (lambda k: k.gather(np.ones((3, 2)), rows(0), np.zeros((1, 2), np.float16)),
     "gather: out is float16 but src is float64; float16 goes only with float32"),
    (lambda k: k.gather(np.ones((3, 2), np.float16), rows(0), np.zeros((1, 2), np.float32)),
     "gather: src must be float32 or float64, got float16"),
    (lambda k: k.gather(np.ones((3, 2), np.float16), rows(0), np.zeros((1, 2), np.float16)),
     "gather: src must be float32 or float64, got float16"),
    (lambda k: k.scatter(np.zeros((3, 2), np.float32), rows(0), np.ones((1, 2), np.float16)),
     "scatter: src must be float32 or float64, got float16"),
    (lambda k: k.nonzero_rows(np.ones((3, 2), np.float16)),
     "nonzero_rows: src must be float32 or float64, got float16"),
    (lambda k: k.narrow(np.ones(4), np.zeros(4, np.float16)),
     "narrow: src must be float32 and out float16, got float64 and float16"),
    (lambda k: k.narrow(np.ones(4, np.float32), np.zeros(4, np.float32)),
     "narrow: src must be float32 and out float16, got float32 and float32"),
    (lambda k: k.narrow(np.ones(4, np.float16), np.zeros(4, np.float32)),
     "narrow: src must be float32 and out float16, got float16 and float32"),
    (lambda k: k.widen(np.ones(4, np.float32), np.zeros(4, np.float16)),
     "widen: src must be float16 and out float32, got float32 and float16"),
    (lambda k: k.widen(np.ones(4, np.float16), np.zeros(4)),
     "widen: src must be float16 and out float32, got float16 and float64"),
    (lambda k: k.widen(np.ones(4, np.uint16), np.zeros(4, np.float32)),
     "widen: src must be float16 and out float32, got uint16 and float32"),
])
def test_half_wire_dtype_errors(impl, call, message):
    with pytest.raises(TypeError) as raised:
        call(impl)
    assert str(raised.value) == message


def read_only(values):
    values.setflags(write=False)
    return values


@pytest.mark.parametrize("call, error, message", [
    (lambda k: k.narrow(np.ones(4, np.float32), np.zeros(3, np.float16)),
     ValueError, "narrow: src has 4 elements but out has 3"),
    (lambda k: k.narrow(np.ones(3, np.float32), np.zeros(4, np.float16)),
     ValueError, "narrow: src has 3 elements but out has 4"),
    (lambda k: k.widen(np.ones(4, np.float16), np.zeros(3, np.float32)),
     ValueError, "widen: src has 4 elements but out has 3"),
    (lambda k: k.widen(np.ones(3, np.float16), np.zeros(4, np.float32)),
     ValueError, "widen: src has 3 elements but out has 4"),
    (lambda k: k.axpy(np.zeros(4, np.float32), np.ones(3, np.float16)),
     ValueError, "axpy: dst has 4 elements but src has 3"),
    (lambda k: k.axpy(np.zeros(3, np.float32), np.ones(4, np.float16)),
     ValueError, "axpy: dst has 3 elements but src has 4"),
    (lambda k: k.narrow(np.ones((2, 2), np.float32), np.zeros((2, 2), np.float16)),
     ValueError, "Buffer has wrong number of dimensions (expected 1, got 2)"),
    (lambda k: k.widen(np.ones(8, np.float16)[::2], np.zeros(4, np.float32)),
     ValueError, "ndarray is not C-contiguous"),
    (lambda k: k.axpy(np.zeros(4, np.float32), np.ones((2, 2), np.float16)),
     ValueError, "Buffer has wrong number of dimensions (expected 1, got 2)"),
    (lambda k: k.max_abs(np.ones(8, np.float16)[::2]),
     ValueError, "ndarray is not C-contiguous"),
    (lambda k: k.narrow(np.ones(4, np.float32), read_only(np.zeros(4, np.float16))),
     ValueError, "buffer source array is read-only"),
    (lambda k: k.widen(np.ones(4, np.float16), read_only(np.zeros(4, np.float32))),
     ValueError, "buffer source array is read-only"),
    (lambda k: k.gather(np.ones((3, 2), np.float32), rows(0), read_only(np.zeros((1, 2), np.float16))),
     ValueError, "buffer source array is read-only"),
])
def test_half_wire_bad_lengths_and_layouts(impl, call, error, message):
    with pytest.raises(error) as raised:
        call(impl)
    assert str(raised.value) == message


def test_kernels_selector():
    kernels = importlib.import_module("deepdist.kernels")
    expected = "numpy" if os.environ.get("DEEPDIST_PURE_PYTHON") == "1" else "cython"
    assert kernels.IMPLEMENTATION == expected
    module = importlib.import_module("deepdist._core_ref" if expected == "numpy" else "deepdist._core")
    for name in ("axpy", "scatter_add", "scatter", "gather", "nonzero_rows", "max_abs", "first_row_outside",
                 "ascending", "index_words", "narrow", "widen"):
        assert getattr(kernels, name) is getattr(module, name)
