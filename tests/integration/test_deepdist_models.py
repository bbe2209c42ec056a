"""DeepDist on local Spark with NumPy models: the original API, a custom descent, Downpour batches."""
import collections
import io
import subprocess
import sys
import types

import numpy as np
import pytest

from deepdist import Client, DeepDist
from deepdist.driver import Progress
from deepdist.spark import PROGRESS, deal, progress_rows

FEATURES = 10
LEARNING_RATE = 0.5


def make_data(n=12_000, seed=0):
    rng = np.random.default_rng(seed)
    true_w = rng.standard_normal(FEATURES)
    x = rng.standard_normal((n, FEATURES))
    p = 1 / (1 + np.exp(-(x @ true_w + 0.5)))
    y = (rng.random(n) < p).astype(np.float64)
    return x, y


def logistic_gradient(model, data):
    """Mean log-loss gradient over the records of one batch (a record is (features, label))."""
    records = list(data)
    x = np.array([r[0] for r in records])
    y = np.array([r[1] for r in records])
    error = 1 / (1 + np.exp(-(x @ model["W"] + model["b"][0]))) - y
    return {"W": x.T @ error / len(records), "b": np.array([error.mean()])}


def sgd_descent(model, update):
    model.W -= LEARNING_RATE * update["W"]
    model.b -= LEARNING_RATE * update["b"]


def accuracy(w, b, x, y):
    return float(np.mean(((x @ w + b) > 0) == (y == 1)))


def test_logistic_regression_with_custom_descent_matches_single_process_sgd(spark_context):
    x, y = make_data()
    batch, epochs = 100, 3
    # Single-process minibatch SGD over the same records in the same order: the reference.
    w, b = np.zeros(FEATURES), np.zeros(1)
    for _ in range(epochs):
        for start in range(0, len(x), batch):
            update = logistic_gradient({"W": w, "b": b}, zip(x[start:start + batch], y[start:start + batch]))
            w -= LEARNING_RATE * update["W"]
            b -= LEARNING_RATE * update["b"]
    reference = accuracy(w, b, x, y)

    model = {"W": np.zeros(FEATURES), "b": np.zeros(1)}
    rdd = spark_context.parallelize(list(zip(x, y)), 4).cache()
    batches = sum(-(-size // batch) for size in rdd.glom().map(len).collect())
    with DeepDist(model, progress=False) as dd:
        for _ in range(epochs):
            summary = dd.train(rdd, logistic_gradient, sgd_descent, batch=batch)
            assert summary["records"] == len(x)
            assert summary["updates"] == batches
            assert summary["partitions"] == 4
        live = dd.model["W"].copy()
        counts = dd.progress_counts()  # the progress counters survive a custom descent
        assert counts.tolist() == [epochs * len(x), 0, epochs * batches, epochs * 4]
    trained = accuracy(model["W"], model["b"][0], x, y)
    assert np.array_equal(live, model["W"])                 # the live model was the final one
    assert reference > 0.7                                   # a problem worth learning
    assert abs(trained - reference) <= 0.01, (trained, reference)


def sum_by_residue(model, records):
    """Each record r adds r to w[r % 4]: integers, so the final w is exact."""
    update = np.zeros_like(model["w"])
    for record in records:
        update[record % len(update)] += record
    return {"w": update}


def test_downpour_batches_over_a_parallelized_range(spark_context):
    # Spark hands each task of sc.parallelize(range(n)) a range object, not an iterator: every record must
    # still be trained once (slicing the range itself would repeat its first records forever).
    model = {"w": np.zeros(4)}
    with DeepDist(model, progress=False) as dd:
        summary = dd.train(spark_context.parallelize(range(1, 21), 2), sum_by_residue, batch=3)
    assert model["w"].tolist() == [sum(r for r in range(1, 21) if r % 4 == k) for k in range(4)]
    assert summary["records"] == 20 and summary["updates"] == 2 * 4  # 10 records a partition, 3 a batch


def batch_sizes(model, records):
    """Uses only len(records): a batch is a list."""
    return {"w": np.full_like(model["w"], len(records))}


def test_a_batch_is_a_list_and_counts_whole(spark_context):
    """A gradient that reads only len() of its batch: the list's records all count (they counted only as
    the gradient iterated over them). A batch must be a whole number."""
    model = {"w": np.zeros(2)}
    with DeepDist(model, progress=False) as dd:
        summary = dd.train(spark_context.parallelize(range(10), 2), batch_sizes, batch=3)
        assert summary["records"] == 10 and dd.progress_counts()[0] == 10
        for bad in (2.5, True, 0):
            with pytest.raises(ValueError, match="positive whole number"):
                dd.train(spark_context.parallelize(range(10), 2), batch_sizes, batch=bad)
    assert model["w"].tolist() == [10.0, 10.0]


def mean_gradient(model, records):
    """The mean of the partition's records: NaN for no records, which a shard would refuse."""
    values = list(records)
    return {"w": np.full_like(model["w"], sum(values) / len(values))}


@pytest.mark.parametrize("batch", [None, 2])
def test_empty_partitions_get_no_gradient_call(spark_context, batch):
    rdd = spark_context.parallelize([4, 8], 2).union(spark_context.parallelize([], 3))  # 5 partitions, 3 empty
    model = {"w": np.zeros(3)}
    with DeepDist(model, progress=False) as dd:
        summary = dd.train(rdd, mean_gradient, batch=batch)
    assert model["w"].tolist() == [12.0] * 3
    assert summary["partitions"] == 5 and summary["records"] == 2 and summary["updates"] == 2


def linear_gradient(model, data):
    """A least-squares step over a whole partition: the original DeepDist shape (one update per partition)."""
    grad, count = np.zeros_like(model.W), 0
    for x, target in data:
        grad += (x @ model.W - target) * x
        count += 1
    return {"W": -0.3 * grad / count}


def test_object_model_with_default_descent_and_original_api(spark_context):
    rng = np.random.default_rng(1)
    true_w = rng.standard_normal(5)
    x = rng.standard_normal((2000, 5))
    rdd = spark_context.parallelize(list(zip(x, x @ true_w)), 4)
    model = types.SimpleNamespace(W=np.zeros(5), name="linear")
    with DeepDist(model, params=["W"], progress=False) as dd:
        for _ in range(20):
            dd.train(rdd, linear_gradient)
    np.testing.assert_allclose(model.W, true_w, atol=0.05)


def test_the_driver_holds_the_parameters_once_while_training(spark_context):
    import gc
    import weakref

    model = types.SimpleNamespace(W=np.zeros(5), name="linear")
    before = weakref.ref(model.W)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((200, 5))
    rdd = spark_context.parallelize(list(zip(x, x @ np.arange(5.0))), 2)
    with DeepDist(model, params=["W"], progress=False) as dd:
        gc.collect()
        assert before() is None  # the model's own array is freed: its values live in shared memory only
        dd.train(rdd, linear_gradient)
        live = model.W.copy()
    np.testing.assert_array_equal(model.W, live)  # the final values, in an ordinary array
    assert model.W.any() and model.W.flags.writeable


# Run in a fresh process, so that its peak resident memory (VmHWM) is this block's alone.
START_PEAK = """
import re, sys
from pathlib import Path
import numpy as np
from deepdist import DeepDist

def peak():
    return int(re.search(r"VmHWM:\\s+(\\d+) kB", Path("/proc/self/status").read_text()).group(1)) << 10

model = {"w": np.full((%(rows)d, 256), 3.0, np.float32)}
kept = model["w"] if sys.argv[1] == "kept" else None
before = peak()
with DeepDist(model, progress=False) as dd:
    grew = peak() - before
    assert (dd.model["w"] == 3.0).all()
assert (model["w"] == 3.0).all()
print(grew, int((kept == 3.0).all()) if kept is not None else -1)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="pages are given back with Linux's madvise")
@pytest.mark.parametrize("holder", ["model", "kept"])
def test_the_driver_never_holds_the_parameters_twice(holder, no_leftover_shm):
    """Starting the block moves the model's arrays into shared memory a block at a time, giving their pages
    back as it goes: the driver's peak grows by far less than the parameters (it grew by all of them when
    they were copied whole). An array the caller also holds is copied instead, and keeps its values."""
    rows = 1 << 18  # 256 MB of float32
    result = subprocess.run([sys.executable, "-c", START_PEAK % {"rows": rows}, holder], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    grew, kept_intact = map(int, result.stdout.split())
    size = rows * 256 * 4
    if holder == "model":
        assert grew < size / 2
    else:
        assert kept_intact == 1 and grew > size / 2


def push_nan(model, data):
    list(data)
    return {"W": np.full_like(model.W, np.nan)}


def push_as_much_again(model, data):
    """A diverging model's update: its values again, which from 1e308 passes float64's largest, 1.8e308."""
    list(data)
    return {"W": model.W.copy()}


@pytest.mark.parametrize("gradient, start, error", [(push_nan, 1.0, "NaN or infinity"),
                                                    (push_as_much_again, 1e308, "to infinity")])
def test_a_bad_update_fails_the_job_and_writes_nothing(spark_context, gradient, start, error):
    model = types.SimpleNamespace(W=np.full(5, start))
    rdd = spark_context.parallelize(range(10), 2)
    with DeepDist(model, params=["W"], progress=False) as dd:
        with pytest.raises(Exception, match=error):
            dd.train(rdd, gradient)
        np.testing.assert_array_equal(dd.model.W, start)


def test_a_misspelled_argument_is_refused_when_the_deepdist_is_made():
    """Not later, when the block starts and ParameterServer would refuse it."""
    with pytest.raises(TypeError, match=r"unexpected keyword arguments \['wire_dtyp'\]; .* 'stop_timeout'"):
        DeepDist({"W": np.zeros(3)}, wire_dtyp="float16")
    DeepDist({"W": np.zeros(3)}, check_finite=False, stop_timeout=3.0)  # ParameterServer's own: passed on


def test_the_progress_counters_name_is_refused_as_a_parameter_name():
    with pytest.raises(ValueError, match="'__deepdist_progress__' is the name deepdist keeps its progress"):
        DeepDist({"__deepdist_progress__": np.zeros(4), "w": np.zeros(3)})


def test_unknown_parameter_names_are_refused():
    with pytest.raises(TypeError, match="params="):
        DeepDist(object())
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        DeepDist(types.SimpleNamespace(W=np.zeros(3)), params=["nope"])
    with pytest.raises(KeyError, match="no parameter 'x'"):
        DeepDist({"W": np.zeros(3)}, params=["x"])


def test_outside_its_with_block_deepdist_says_so(spark_context, no_leftover_shm):
    model = {"w": np.zeros(3)}
    dd = DeepDist(model, progress=False)
    rdd = spark_context.parallelize([1, 2], 2)
    for _ in ("before", "after"):
        for use in (lambda: dd.train(rdd, mean_gradient), lambda: dd.address, dd.progress_counts):
            with pytest.raises(RuntimeError, match="only inside its with-block"):
                use()
        with dd:
            dd.train(rdd, mean_gradient)
    assert model["w"].tolist() == [6.0] * 3  # each block added 1 + 2 (its partitions' means) to the last's


class Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("stream", [Terminal, io.StringIO], ids=["terminal", "log"])
def test_progress_line_counts_what_the_workers_reported(stream, no_leftover_shm):
    out = stream()
    with DeepDist({"w": np.zeros(3)}, progress=False) as dd:
        progress = Progress(dd, partitions=4, stream=out)
        with Client(dd.address) as client:  # what two tasks push: records, words, updates, partitions done
            client.push({PROGRESS: progress_rows(records=30, words=600, updates=3, partitions=1)})
            client.push({PROGRESS: progress_rows(records=10, words=200, updates=1, partitions=1)})
        progress.stop()
    text = out.getvalue()
    last = text.split("\r")[-1] if stream is Terminal else text.splitlines()[-1] + "\n"
    assert last.startswith("deepdist: partitions 2/4 | ") and last.endswith(" updates/s\n"), text
    assert " records/s | " in last and " words/s | " in last
    if stream is io.StringIO:  # in a log, no carriage returns: every line stands alone
        assert "\r" not in text


def test_train_prints_progress_and_a_summary(spark_context, capsys):
    with DeepDist({"w": np.zeros(4)}) as dd:  # progress on by default
        dd.train(spark_context.parallelize(range(1, 21), 2), sum_by_residue)
    err = capsys.readouterr().err
    assert "deepdist: partitions 2/2 | " in err
    assert "deepdist: 2 partitions, 20 records, 2 updates in " in err


# Matrix factorization, the classic sparse model: a rating (user, item, r) reads and changes one row of U and
# one of V. With rows=, a task pulls only the rows of its batch's users and items.
USERS, ITEMS, RANK, MF_RATE = 400, 300, 3, 0.05


def mf_rows(records):
    return {"U": [r[0] for r in records], "V": [r[1] for r in records]}


def mf_gradient(model, data):
    records = list(data)
    users, items = np.array([r[0] for r in records]), np.array([r[1] for r in records])
    error = np.sum(model["U"][users] * model["V"][items], 1) - np.array([r[2] for r in records])
    return {"U": (users, -MF_RATE * error[:, None] * model["V"][items]),
            "V": (items, -MF_RATE * error[:, None] * model["U"][users])}


def test_matrix_factorization_pulls_only_the_rows_of_each_batch(spark_context):
    rng = np.random.default_rng(0)
    true_u, true_v = rng.standard_normal((USERS, RANK)), rng.standard_normal((ITEMS, RANK))
    users, items = rng.integers(0, USERS, 20_000), rng.integers(0, ITEMS, 20_000)
    ratings = np.sum(true_u[users] * true_v[items], 1)
    rdd = spark_context.parallelize(list(zip(users.tolist(), items.tolist(), ratings.tolist())), 2).cache()
    model = {"U": 0.3 * rng.standard_normal((USERS, RANK)), "V": 0.3 * rng.standard_normal((ITEMS, RANK))}
    model_bytes = model["U"].nbytes + model["V"].nbytes

    def rmse():
        return float(np.sqrt(np.mean((np.sum(model["U"][users] * model["V"][items], 1) - ratings) ** 2)))

    start = rmse()
    with DeepDist(model, progress=False) as dd:
        for _ in range(8):
            summary = dd.train(rdd, mf_gradient, batch=100, rows=mf_rows)
    # Single-process SGD over the same batches reaches 2e-4 in 8 epochs; two tasks at a time come close.
    assert start > 1.5 and rmse() < 0.05
    # Each batch of 100 ratings pulled at most 200 rows of 24 bytes, not the 16,800-byte model.
    assert summary["records"] == 20_000 and summary["updates"] >= 200
    assert summary["bytes_received"] < 0.4 * summary["updates"] * model_bytes


def check_rows_seen(model, data):
    """Fail the task unless exactly the rows its one record names hold the server's values (row i holds i)
    and every other row reads zero: the rows filled for the batch before are cleared."""
    (rows,) = data
    expected = np.zeros(20)
    expected[rows] = rows
    if not np.array_equal(model["w"][:, 0], expected) or not np.array_equal(model["b"], np.arange(4.0)):
        raise AssertionError(f"batch {rows} saw {model['w'][:, 0].tolist()} and {model['b'].tolist()}")
    return {}


def test_rows_not_named_read_zero_and_others_are_pulled_whole(spark_context):
    model = {"w": np.repeat(np.arange(20.0)[:, None], 3, 1), "b": np.arange(4.0)}
    rdd = spark_context.parallelize([[1, 5], [5, 7], [19], [0, 2, 2]], 1)  # a record: the rows to read
    with DeepDist(model, progress=False) as dd:
        summary = dd.train(rdd, check_rows_seen, batch=1, rows=lambda records: {"w": records[0]})
    assert summary["updates"] == 4


def count_before(model, data):
    """Fail unless the model shows every earlier update of this (only) task."""
    (seen,) = data
    if model["w"].tolist() != [seen] * 2:
        raise AssertionError(f"batch {seen} saw {model['w'].tolist()}")
    return {"w": np.ones(2)}


def count_row_before(model, data):
    """With rows=: the batch's row shows its earlier updates, every other row zero."""
    ((position, row, earlier),) = data
    expected = np.zeros(10)
    expected[row] = earlier
    if not np.array_equal(model["w"][:, 0], expected):
        raise AssertionError(f"batch {position} (row {row}) saw {model['w'][:, 0].tolist()}")
    return {"w": (np.array([row, 9 - row]), np.ones((2, 2)))}  # one row it read, one it did not


def test_each_batch_sees_the_tasks_own_earlier_updates(spark_context):
    """Read-your-writes within a task, with and without rows= (a pull that overtook the task's own last push
    would show one update less)."""
    model = {"w": np.zeros(2)}
    with DeepDist(model, progress=False) as dd:
        dd.train(spark_context.parallelize(range(30), 1), count_before, batch=1)
    assert model["w"].tolist() == [30.0] * 2
    sequence = [3, 3, 5, 3, 5, 0, 3, 1, 1]
    records = [(i, row, sequence[:i].count(row) + sequence[:i].count(9 - row)) for i, row in enumerate(sequence)]
    model = {"w": np.zeros((10, 2))}
    with DeepDist(model, progress=False) as dd:
        dd.train(spark_context.parallelize(records, 1), count_row_before, batch=1,
                 rows=lambda batch: {"w": [batch[0][1]]})
    assert model["w"].sum() == 2 * 2 * len(sequence)


def no_rows_read(model, data):
    (rows,) = data
    if model["w"].any():
        raise AssertionError(f"a batch that read no rows saw {model['w'].tolist()}")
    return {"w": (np.array(rows, np.int64), np.ones((len(rows), 2)))}


def test_a_batch_may_read_no_rows(spark_context):
    model = {"w": np.ones((4, 2))}
    with DeepDist(model, progress=False) as dd:
        dd.train(spark_context.parallelize([[], [1], []], 1), no_rows_read, batch=1,
                 rows=lambda batch: {"w": np.array([], np.int64)})
    assert model["w"].sum() == 8 + 2


def test_rows_must_name_parameters_with_integer_rows(spark_context):
    rdd = spark_context.parallelize([[1]], 1)
    with DeepDist({"w": np.zeros((3, 2))}, progress=False) as dd:
        with pytest.raises(Exception, match="not parameters"):
            dd.train(rdd, check_rows_seen, rows=lambda records: {"v": [0]})
        with pytest.raises(Exception, match="row indices are integers"):
            dd.train(rdd, check_rows_seen, rows=lambda records: {"w": [0.5]})
        with pytest.raises(Exception, match=r"must be in \[0, 3\)"):
            dd.train(rdd, check_rows_seen, rows=lambda records: {"w": [3]})
        with pytest.raises(Exception, match="row 18446744073709551615 for 'w', past the end"):
            dd.train(rdd, check_rows_seen, rows=lambda records: {"w": np.array([2**64 - 1], np.uint64)})
        with pytest.raises(TypeError, match="rows must be a function"):
            dd.train(rdd, check_rows_seen, rows={"w": [0]})


def printing_descent(model, update):
    print(f"descent sees {update['w'].tolist()}")
    model.w += update["w"]


def test_a_descent_may_print(spark_context, capfd):
    """A shard answers the server on its own pipe: a descent's print goes to the log, and is not taken for
    the answer to the server's next command (which failed a job that had trained well)."""
    model = {"w": np.zeros(3)}
    with DeepDist(model, progress=False) as dd:
        dd.train(spark_context.parallelize([1.0, 2.0], 2), mean_gradient, printing_descent)
    assert model["w"].tolist() == [3.0] * 3
    assert "descent sees [1.0, 1.0, 1.0]" in capfd.readouterr().err


class ReadOnlyParameter:
    def __init__(self):
        self._w = np.ones(3)

    @property
    def w(self):
        return self._w


def sparse_as_a_list(model, data):
    list(data)
    return {"w": [np.array([0]), np.ones((1, 2))]}


def test_a_sparse_update_given_as_a_list_is_explained(spark_context):
    with DeepDist({"w": np.zeros((3, 2))}, progress=False) as dd:
        with pytest.raises(Exception, match=r"is a list; a dense update is an array, a sparse one a tuple "
                                            r"\(rows, values\)"):
            dd.train(spark_context.parallelize([1], 1), sparse_as_a_list)


ODD_UPDATES = {  # what numpy would cast to float without a word, and what Python would unpack vaguely
    "complex": (lambda w: w + 1j, "holds complex128 values"),
    "masked": (lambda w: np.ma.masked_all_like(w), "is a masked array"),
    "strings": (lambda w: np.full(w.shape, "1e3"), "holds <U3 values"),
    "bool": (lambda w: np.ones(w.shape, bool), "holds bool values"),
    "dates": (lambda w: np.full(w.shape, np.datetime64("2020-01-01")), "holds datetime64"),
    "tuple of 3": (lambda w: (np.array([0]), np.ones((1, 2)), 1), r"is a tuple of 3; it must be \(rows, values\)"),
}


def odd_update(model, data):
    kind = list(data)[0]
    return {"w": ODD_UPDATES[kind][0](model["w"])}


@pytest.mark.parametrize("kind", sorted(ODD_UPDATES))
def test_an_update_of_the_wrong_kind_is_refused_not_cast(spark_context, kind):
    with DeepDist({"w": np.zeros((3, 2))}, progress=False) as dd:
        with pytest.raises(Exception, match=f"gradient's (sparse )?update for 'w' {ODD_UPDATES[kind][1]}"):
            dd.train(spark_context.parallelize([kind], 1), odd_update)
        np.testing.assert_array_equal(dd.model["w"], 0)


def update_as_a_list(model, data):
    list(data)
    return [np.ones(3)]


def test_a_gradient_that_returns_no_dict_is_explained(spark_context):
    with DeepDist({"w": np.zeros(3)}, progress=False) as dd:
        with pytest.raises(Exception, match=r"gradient must return \{name: .*it returned a list"):
            dd.train(spark_context.parallelize([1], 1), update_as_a_list)


class Settings(dict):
    """A model that is a dict and carries settings as attributes."""


def rate_and_default(model, data):
    list(data)
    return {"w": np.full(3, getattr(model, "rate", 0.0) + model["unset"])}


def test_a_dict_model_reaches_the_tasks_as_its_own_class(spark_context):
    rdd = spark_context.parallelize([1], 1)
    model = Settings(w=np.zeros(3), unset=0.0)
    model.rate = 0.5
    with DeepDist(model, params=["w"], progress=False) as dd:
        dd.train(rdd, rate_and_default)
    model = collections.defaultdict(lambda: 2.0, w=np.zeros(3))  # a lambda: cloudpickle carries it
    with DeepDist(model, progress=False) as dd:
        dd.train(rdd, rate_and_default)
    assert model["w"].tolist() == [2.0] * 3 and "unset" not in model


def test_more_parameters_than_a_request_can_carry_are_refused_before_anything_starts(no_leftover_shm):
    """A request names each parameter once at most: a full pull of 1,025 would fail inside the job."""
    with pytest.raises(ValueError, match="1025 parameters, more than the 1024"):  # with the progress counters
        with DeepDist({f"p{i}": np.zeros(2) for i in range(1024)}, progress=False):
            pass


def test_a_gradient_that_refers_to_deepdist_is_refused_with_a_reason(spark_context):
    with DeepDist({"w": np.zeros(3)}, progress=False) as dd:
        def gradient(model, data):
            return {"w": np.ones(3) * dd.progress_counts()[0]}

        with pytest.raises(Exception, match="lives on the driver and cannot be sent to Spark tasks"):
            dd.train(spark_context.parallelize([1], 1), gradient)


def test_a_model_that_cannot_take_new_arrays_is_refused_before_anything_starts(no_leftover_shm):
    model = ReadOnlyParameter()
    with pytest.raises(AttributeError, match="has no setter"):
        DeepDist(model, params=["w"], progress=False).__enter__()
    assert model.w.tolist() == [1.0] * 3  # not moved into shared memory; no shards left running


def test_one_block_at_a_time_per_deepdist_and_per_model(no_leftover_shm):
    """Re-entering a block leaked its shards; a second DeepDist on a model the first is serving trained a copy
    whose training the first block's end dropped. Both are refused, and the running block is unharmed."""
    model = {"w": np.ones(3)}
    dd = DeepDist(model, progress=False)
    with dd:
        with pytest.raises(RuntimeError, match="already running"):
            dd.__enter__()
        with pytest.raises(RuntimeError, match="already served by another DeepDist"):
            DeepDist(model, progress=False).__enter__()
        with Client(dd.address) as client:
            client.push({"w": np.ones(3)})
    assert model["w"].tolist() == [2.0] * 3
    with DeepDist(model, progress=False):  # the model is free again
        pass


@pytest.mark.parametrize("source", ["parallelize", "python-transformation", "text-file"])
def test_deal_spreads_every_record_once_over_the_partitions(spark_context, tmp_path, source):
    """deal gives each new partition batches from all over the old ones, every record exactly once, in the
    order each old partition held them."""
    n = 20_000
    if source == "parallelize":
        rdd = spark_context.parallelize(range(n), 2)
    elif source == "python-transformation":
        rdd = spark_context.parallelize(range(n), 2).map(lambda x: x)
    else:  # a JVM RDD of strings, not batched by pyspark
        (tmp_path / "lines.txt").write_text("".join(f"{i}\n" for i in range(n)))
        rdd = spark_context.textFile(str(tmp_path / "lines.txt"), 2)
    parts = deal(rdd, 3).map(int).glom().collect()
    assert len(parts) == 3
    assert sorted(x for part in parts for x in part) == list(range(n))
    for part in parts:
        assert min(part) < n // 2 <= max(part)  # from both halves of the corpus
        halves = [x // (n // 2) for x in part]
        assert halves == sorted(halves)  # the first half's batches, then the second's
        for half in (0, 1):
            values = [x for x in part if x // (n // 2) == half]
            assert values == sorted(values)  # each old partition's batches in their order


def test_deal_refuses_a_bad_partition_count(spark_context):
    rdd = spark_context.parallelize(range(10), 2)
    with pytest.raises(ValueError, match="at least 1, got 0"):
        deal(rdd, 0)
    with pytest.raises(TypeError, match="whole number, got 2.0"):
        deal(rdd, 2.0)
    with pytest.raises(TypeError, match="whole number, got True"):
        deal(rdd, True)


def count_rows(model, records):
    """Adds 1 to row r % 1000 of 'w' for each record r: small integers, exact in float16 and float32."""
    delta = np.zeros_like(model["w"])
    for record in records:
        delta[record % 1000] += 1
    return {"w": delta}


def add_twice(model, update):
    """A custom descent: on the shards it gets the pushed float16 values as float32."""
    assert update["w"].dtype == np.float32, update["w"].dtype
    model.w += 2 * update["w"]


def test_the_float16_wire_trains_the_same_with_half_the_bytes(spark_context):
    rdd = spark_context.parallelize(range(6000), 2)
    expected = np.zeros((1000, 16), np.float32)
    np.add.at(expected, np.arange(6000) % 1000, 1)
    summaries = {}
    for wire in (None, "float16"):
        model = {"w": np.zeros((1000, 16), np.float32)}
        with DeepDist(model, progress=False, wire_dtype=wire) as dd:
            assert dd.client_options["wire_dtype"] == wire
            summaries[wire] = dd.train(rdd, count_rows, batch=500)
            dd.train(rdd, count_rows, add_twice, batch=500)  # dense pushes, handed to the descent
        np.testing.assert_array_equal(model["w"], 3 * expected, err_msg=str(wire))
    # Each batch pulls the whole 64,000-byte parameter: 32,000 bytes as float16.
    assert summaries[None]["updates"] == summaries["float16"]["updates"] == 12
    assert summaries["float16"]["bytes_received"] < 0.55 * summaries[None]["bytes_received"]
    assert summaries["float16"]["bytes_sent"] < 0.6 * summaries[None]["bytes_sent"]
