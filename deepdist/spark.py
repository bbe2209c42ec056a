"""What runs inside Spark: the task that trains on one partition, and how executors find the shards.

Everything here runs on executors except ``settings``, ``shard_addresses`` and ``deal``, which the driver
calls. A task gets the model once per job through a broadcast that holds it without its parameter arrays
(``models.strip``); it fills those arrays by pulling from the shards.
"""
from __future__ import annotations

import copy
import itertools
import logging
import numbers
import pickle
import socket
import time
from collections.abc import Mapping

import numpy as np

from . import kernels
from .client import MAX_TIMEOUT, MAX_WINDOW, MIN_TIMEOUT, Client
from .models import is_word2vec, set_arrays
from .sharding import WILDCARDS

log = logging.getLogger("deepdist")

# A hidden float64 parameter every DeepDist server carries: how far the current job has got, summed over all
# workers. The driver's progress bar reads it from shared memory; word2vec decays its learning rate by it.
PROGRESS = "__deepdist_progress__"
RECORDS, WORDS, UPDATES, PARTITIONS = range(4)
PROGRESS_SIZE = 4


# Spark configuration keys (``spark-submit --conf KEY=VALUE``, spark-defaults.conf) that DeepDist reads for
# every argument the program leaves unset; see docs/configuration.md. Argument name -> (key, type).
CONF_KEYS = {
    "host": ("spark.deepdist.bindAddress", str),
    "advertise": ("spark.deepdist.advertiseAddress", str),
    "port": ("spark.deepdist.port", int),
    "shards": ("spark.deepdist.shards", int),
    "timeout": ("spark.deepdist.timeout", float),
    "window": ("spark.deepdist.window", int),
    "check_finite": ("spark.deepdist.checkFinite", bool),
    "encrypt": ("spark.deepdist.encrypt", bool),
    "wire_dtype": ("spark.deepdist.wireDtype", str),
}
DEFAULTS = {"host": None, "advertise": None, "port": 0, "shards": 2, "timeout": 60.0, "window": 32,
            "check_finite": True, "encrypt": False, "wire_dtype": None}


def settings(conf, **given) -> dict:
    """DeepDist's settings (the names of ``CONF_KEYS``): each one given and not None, else its key in the
    Spark configuration ``conf`` (a SparkConf, the active SparkContext's; None without Spark), else its
    default; then bind and advertised address as ``shard_addresses`` decides."""
    unknown = set(given) - set(CONF_KEYS)
    if unknown:
        raise TypeError(f"unknown settings {sorted(unknown)}")
    out = {}
    for name, (key, kind) in CONF_KEYS.items():
        value, where = given.get(name), name
        if value is None and conf is not None:
            text = conf.get(key, None)
            if text is not None and text.strip():
                value, where = parse_setting(key, kind, text.strip()), key
        out[name] = DEFAULTS[name] if value is None else value
        check_setting(name, out[name], where)
    out["host"], out["advertise"] = shard_addresses(conf, out["host"], out["advertise"])
    return out


def parse_setting(key, kind, text):
    if kind is bool:
        if text.lower() in ("true", "1", "yes"):
            return True
        if text.lower() in ("false", "0", "no"):
            return False
        raise ValueError(f"{key} must be true or false, got {text!r}")
    try:
        return kind(text)
    except ValueError:
        raise ValueError(f"{key} must be {'an integer' if kind is int else 'a number'}, got {text!r}") from None


def check_setting(name, value, where) -> None:
    if value is None:
        return
    kind = CONF_KEYS[name][1]
    # bool is an int to Python, and a string is truthy: a setting of the wrong type would pass the range
    # checks below, or fail them with an unrelated TypeError. numpy's numbers are numbers.
    accepted = {int: numbers.Integral, float: numbers.Real}.get(kind, kind)
    if isinstance(value, bool) is not (kind is bool) or not isinstance(value, accepted):
        expected = {str: "a string", int: "a whole number", float: "a number", bool: "True or False"}[kind]
        raise TypeError(f"{where} must be {expected}, got {value!r}")
    bad = {"port": lambda v: not 0 <= v < 65536, "shards": lambda v: v < 1,
           "timeout": lambda v: not MIN_TIMEOUT <= v <= MAX_TIMEOUT, "window": lambda v: not 1 <= v <= MAX_WINDOW,
           "advertise": lambda v: v in WILDCARDS, "wire_dtype": lambda v: v != "float16"}
    if name in bad and bad[name](value):
        what = {"port": "a port (0: any free port)", "shards": "at least 1",
                "timeout": f"seconds from {MIN_TIMEOUT:g} to {MAX_TIMEOUT:g}",
                "window": f"from 1 to {MAX_WINDOW}", "advertise": "an address clients can dial, not a wildcard",
                "wire_dtype": "'float16' (or unset: values travel in their parameter's dtype)"}[name]
        raise ValueError(f"{where} must be {what}, got {value!r}")


def shard_addresses(conf, host=None, advertise=None) -> tuple:
    """``(bind, advertise)``: where shards listen and the host executors dial.

    On a local master everything stays on loopback. Otherwise shards listen on every interface and
    executors dial ``spark.driver.host`` (the address Spark itself uses to reach the driver), unless told
    otherwise (arguments, or spark.deepdist.bindAddress / advertiseAddress through ``settings``). ``conf``:
    the Spark configuration (its ``spark.master`` says which master), or None without Spark.
    """
    master = conf.get("spark.master", "local") if conf is not None else "local"
    local = master.startswith("local")
    if host is None:
        host = "127.0.0.1" if local else "0.0.0.0"
    if advertise is None:
        if host not in WILDCARDS:
            advertise = host
        else:
            advertise = (conf.get("spark.driver.host", None) if conf is not None else None) or socket.getfqdn()
    if not local and (advertise.startswith("127.") or advertise in ("localhost", "::1")):
        log.warning("deepdist: shards advertise the loopback address %s to master %s: only executors on "
                    "this machine can reach them (set spark.driver.host to an address they can reach, or "
                    "spark.deepdist.advertiseAddress for the shards alone)", advertise, master)
    return host, advertise


def deal(rdd, partitions: int):
    """``rdd`` dealt round-robin over ``partitions`` partitions, like ``rdd.repartition(partitions)`` but with no
    pass through Python: Spark's JVM deals the serialized batches pyspark already holds the records in
    (``parallelize``: up to 1,024 records each; a Python transformation's output: about 64 kB each) as they
    are. Each new partition gets every other batch of each old partition, in order, so the tasks training at
    once read text from all over the corpus. ``repartition`` unpickles every record and pickles it again in
    batches of 10 first: 1.4-2.0 s against 0.8 s for the 6M-word dictionaries corpus on 2 cores.

    The balance is by batch: Spark starts dealing each old partition at a new partition of its own choosing,
    so an RDD of only a few batches per partition (a ``parallelize``d list of a few thousand records is one
    batch per slice) can leave one new partition with several old partitions' records and another empty.
    ``rdd.repartition(n)`` deals record by record; a corpus of many batches (any real one) comes out even.
    """
    from pyspark import RDD

    if isinstance(partitions, bool) or not isinstance(partitions, numbers.Integral):
        raise TypeError(f"deal: partitions must be a whole number, got {partitions!r}")
    if partitions < 1:
        raise ValueError(f"deal: partitions must be at least 1, got {partitions}")
    return RDD(rdd._jrdd.repartition(int(partitions)), rdd.ctx, rdd._jrdd_deserializer)


def worker_model(shell):
    """A private copy of the broadcast model for one task: arrays of its own, vocabulary shared."""
    model = copy.copy(shell)  # a dict stays of its own class; the arrays are replaced, not written
    if is_word2vec(shell):
        model.wv = copy.copy(shell.wv)
        # Each task draws its own negatives and subsampling decisions: gensim reads model.random.
        model.random = np.random.RandomState(np.random.SeedSequence().generate_state(1)[0])
    return model


def batches(records, size):
    """Lists of ``size`` records (the whole partition, streamed, when size is None); nothing for an empty
    partition, so ``gradient`` never sees an empty one (a mean over no records is NaN, which a shard refuses).

    records may be any iterable: Spark hands a task a ``range`` for a partition of ``sc.parallelize(range(n))``,
    and slicing a range, not an iterator over it, would yield its first records forever.
    """
    iterator = iter(records)
    if size is None:
        for first in iterator:  # at most once: is there a record at all?
            yield itertools.chain((first,), iterator)
            return
        return
    while True:
        batch = list(itertools.islice(iterator, size))
        if not batch:
            return
        yield batch


class Counted:
    """Wraps an iterator and counts what it yields (gradient may consume any part of a partition)."""

    def __init__(self, iterator):
        self.iterator, self.count = iter(iterator), 0

    def __iter__(self):
        return self

    def __next__(self):
        item = next(self.iterator)
        self.count += 1
        return item


def progress_rows(records=0, words=0, updates=0, partitions=0) -> tuple:
    """A sparse update of the PROGRESS parameter."""
    return (np.array([RECORDS, WORDS, UPDATES, PARTITIONS]),
            np.array([records, words, updates, partitions], np.float64))


def unpack_model(model_broadcast):
    """The task's own copy of the model the driver broadcast."""
    return worker_model(load_shell(model_broadcast))


def load_shell(model_broadcast):
    """The model the driver broadcast, without its parameter arrays (pickled by the driver with cloudpickle,
    so that classes defined in a driver script travel too; Spark's broadcast channel is the driver's own)."""
    return pickle.loads(model_broadcast.value)


def gradient_task(model_broadcast, job, partition, iterator):
    """The body of one Spark task of ``DeepDist.train``: pull, ``gradient``, push, every ``batch`` records.

    Yields one summary dict for the driver to add up.
    """
    model = unpack_model(model_broadcast)
    names, gradient, batch = job["names"], job["gradient"], job["batch"]
    specs = {spec.name: spec for spec in job["address"].params}
    rows_pulled = RowsPulled(specs, names, job["rows"]) if job.get("rows") else None
    started = time.monotonic()
    records = updates = 0
    with Client(job["address"], **job["client"]) as client:
        for part in batches(iterator, batch):
            if rows_pulled is None:
                set_arrays(model, client.pull(names))
            else:
                part = list(part)
                set_arrays(model, rows_pulled.pull(client, part))
            # A batch is a list already: gradient gets it (len() works) and all of it counts as read. A whole
            # partition streams: what gradient reads of it is counted.
            data = part if isinstance(part, list) else Counted(part)
            update = gradient(model, data)
            if update is not None and not isinstance(update, Mapping):
                raise TypeError(f"gradient must return {{name: dense delta or (rows, values)}}, or None for no "
                                f"update; it returned a {type(update).__name__}")
            read = len(data) if isinstance(data, list) else data.count
            update = {name: as_param_dtype(specs, name, value) for name, value in (update or {}).items()}
            update[PROGRESS] = progress_rows(records=read, updates=1)
            client.push(update)
            records += read
            updates += 1
        client.push({PROGRESS: progress_rows(partitions=1)})
        client.flush()
    yield {"partitions": 1, "records": records, "updates": updates, "seconds": time.monotonic() - started,
           "bytes_sent": client.bytes_sent, "bytes_received": client.bytes_received}


class RowsPulled:
    """A task's parameters when ``rows(records)`` names the rows each batch reads: the task pulls only those
    (a parameter the answer leaves out is pulled whole) into full-size arrays of its own, zeros elsewhere.

    The arrays are allocated once per task with ``np.zeros``, whose pages cost nothing until written, so a task
    holds only the rows it has read. The rows filled for the previous batch are zeroed before the next batch's
    are filled in: a row the batch did not name reads zero, never a stale value, unless the task's own
    gradient wrote it in place (the task cannot see such writes without reading the whole array).
    """

    def __init__(self, specs, names, rows):
        self.specs, self.names, self.rows = specs, names, rows
        self.arrays, self.filled = {}, {}

    def pull(self, client, records: list) -> dict:
        wanted = self.rows(records)
        if not isinstance(wanted, dict):
            raise TypeError(f"rows(records) must return {{name: row indices}}, got {type(wanted).__name__}")
        unknown = set(wanted) - set(self.names)
        if unknown:
            raise KeyError(f"rows(records) named {sorted(unknown)}, which are not parameters "
                           f"(parameters: {sorted(self.names)})")
        wanted = {name: self.distinct(name, rows) for name, rows in wanted.items() if rows is not None}
        pulled = client.pull(self.names, rows={name: wanted.get(name) for name in self.names})
        for name, rows in wanted.items():
            spec = self.specs[name]
            if name not in self.arrays:
                self.arrays[name] = np.zeros(spec.shape, spec.dtype)
            flat = self.arrays[name].reshape(spec.n_rows, -1)
            previous = self.filled.get(name)
            if previous is not None:
                kernels.scatter(flat, previous, np.zeros((len(previous), flat.shape[1]), flat.dtype))
            kernels.scatter(flat, rows, pulled[name].reshape(len(rows), flat.shape[1]))
            self.filled[name] = rows
            pulled[name] = self.arrays[name]
        return pulled

    @staticmethod
    def distinct(name, rows) -> np.ndarray:
        rows = np.asarray(rows)
        if rows.size and rows.dtype.kind not in "iu":
            raise TypeError(f"rows(records) gave {rows.dtype} rows for {name!r}; row indices are integers")
        rows = np.unique(rows.reshape(-1))
        if rows.size and rows.dtype.kind == "u" and rows[-1] > np.iinfo(np.int64).max:
            raise IndexError(f"rows(records) gave row {rows[-1]} for {name!r}, past the end of any parameter")
        return rows.astype(np.int64)


class DescentKeepingProgress:
    """The user's descent, with the hidden progress counters added rather than handed to it.

    A user's descent knows nothing of PROGRESS and would write its old value back; this wrapper adds the
    counters itself and shows descent only the user's parameters.
    """

    def __init__(self, descent):
        self.descent = descent

    def __call__(self, model, update):
        progress = update.pop(PROGRESS)
        counters = getattr(model, PROGRESS)
        delattr(model, PROGRESS)
        try:
            # A push that carries only the counters (a task's last, or a shard that owns none of the
            # parameters the push touches) is no update of the user's: the descent is not called on it.
            if any(len(values) for values in update.values()):
                self.descent(model, update)
        finally:
            setattr(model, PROGRESS, counters + progress)


def as_param_dtype(specs, name, value):
    """The user's update with its values in the parameter's dtype (gradients are often computed in float64).

    Real numbers only: numpy would also cast complex (dropping the imaginary part), bool, dates, strings and
    masked arrays (dropping the mask), each a mistake that would train on garbage without a word."""
    if name not in specs:
        raise KeyError(f"gradient returned an update for {name!r}, which is not a parameter "
                       f"(parameters: {sorted(n for n in specs if n != PROGRESS)})")
    dtype = np.dtype(specs[name].dtype)
    if isinstance(value, tuple):
        if len(value) != 2:
            raise ValueError(f"gradient's sparse update for {name!r} is a tuple of {len(value)}; it must be "
                             f"(rows, values)")
        rows, values = value
        return rows, real_values(name, values, dtype)
    if isinstance(value, list):
        raise TypeError(f"gradient's update for {name!r} is a list; a dense update is an array, a sparse one "
                        f"a tuple (rows, values)")
    return real_values(name, value, dtype)


def real_values(name, values, dtype) -> np.ndarray:
    if isinstance(values, np.ma.MaskedArray):
        raise TypeError(f"gradient's update for {name!r} is a masked array: fill it first "
                        f"(values.filled(0)), or the masked values would be added")
    try:
        array = np.asarray(values)
    except (TypeError, ValueError) as error:
        raise TypeError(f"gradient's update for {name!r} is not an array ({error})") from None
    if array.dtype.kind not in "fiu":
        raise TypeError(f"gradient's update for {name!r} holds {array.dtype} values; a parameter takes real "
                        f"numbers (float or integer arrays)")
    return array.astype(dtype, copy=False)
