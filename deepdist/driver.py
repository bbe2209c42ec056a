"""DeepDist: the user's context manager. Serves a model's parameters while Spark tasks train it.

    with DeepDist(model) as dd:             # starts the shards on the driver
        dd.train(rdd, gradient, descent)    # one pass over the RDD
        dd.model                            # the master model, live while training
    # after the block dd.model is an ordinary model holding the final parameters
"""
from __future__ import annotations

import inspect
import logging
import numbers
import sys
import threading
import time

import numpy as np

from .models import forget_cached, get_arrays, param_names, set_arrays, strip
from .server import ParameterServer, pickle_function
from .spark import (PARTITIONS, PROGRESS, PROGRESS_SIZE, RECORDS, UPDATES, WORDS, DescentKeepingProgress,
                    gradient_task, settings)

log = logging.getLogger("deepdist")

PROGRESS_INTERVAL = 0.5       # seconds between refreshes of the progress line on a terminal
PROGRESS_LOG_INTERVAL = 30.0  # seconds between progress lines written to a file or a pipe (a driver's log)


# ParameterServer's keyword arguments that DeepDist passes on as they are (it sets the others itself).
SERVER_OPTIONS = set(inspect.signature(ParameterServer).parameters) - {"params", "shards", "host", "port",
                                                                       "advertise"}
# id() of every model a DeepDist block is serving in this process: a second block on one of them is refused.
_SERVED = set()


class DeepDist:
    """Serve ``model``'s parameters from ``shards`` processes for Spark tasks to train.

    model: a gensim Word2Vec (parameters 'syn0', 'syn1neg', 'syn1'), a dict of arrays, or any object whose
        numpy attributes ``params`` names.
    host, advertise, port: where shards listen and the host executors dial (default: loopback on a local
        master, else every interface and ``spark.driver.host``); see ``spark.shard_addresses``.
    timeout: seconds a task waits for a shard before it fails with ShardTimeout.
    window: unacknowledged pushes per shard a task may have in flight.
    wire_dtype: ``"float16"``: the tasks' values of float32 parameters travel as float16, half the bytes
        (``Client``'s half-precision wire); None: in their own dtype.
    progress: print a progress line to stderr while ``train`` runs.
    shards, host, advertise, port, timeout, window, check_finite, encrypt and wire_dtype left as None are read
    from the Spark configuration (``spark.deepdist.shards`` etc., see ``spark.CONF_KEYS``) when the block
    starts, else default to 2 shards, any free ports, 60 s, 32, True, False and None; docs/configuration.md
    has the table. check_finite and encrypt are ParameterServer's (keyword arguments passed on).
    """

    def __init__(self, model, params=None, shards: int = None, host=None, advertise=None, port: int = None,
                 timeout: float = None, window: int = None, wire_dtype: str = None, progress: bool = True,
                 **server_options):
        self.model = model
        self.names = param_names(model, params)
        if PROGRESS in self.names:
            raise ValueError(f"{PROGRESS!r} is the name deepdist keeps its progress counters under on the server: "
                             f"rename that parameter")
        self.shards, self.host, self.advertise, self.port = shards, host, advertise, port
        self.given_client_options = {"timeout": timeout, "window": window, "wire_dtype": wire_dtype}
        self.client_options = None  # what tasks use: the given options, completed when the block starts
        self.progress = progress
        unknown = sorted(set(server_options) - SERVER_OPTIONS)
        if unknown:  # here, not when the block starts
            raise TypeError(f"DeepDist() got unexpected keyword arguments {unknown}; besides its own it takes "
                            f"ParameterServer's {sorted(SERVER_OPTIONS)}")
        self.server_options = server_options
        self.server = None

    def __reduce__(self):
        raise TypeError("a DeepDist lives on the driver and cannot be sent to Spark tasks (is gradient a "
                        "closure that refers to it?): gradient(model, data) gets the worker's model as its "
                        "first argument, and dd.address is all a task needs to reach the shards")

    @property
    def address(self):
        return self.running().address

    def running(self) -> ParameterServer:
        """The server, while the with-block runs; before or after it a clear error, not an AttributeError on
        None or tasks timing out against shards that are gone."""
        if self.server is None:
            raise RuntimeError("DeepDist serves its model only inside its with-block: "
                               "`with DeepDist(model) as dd: dd.train(...)`")
        return self.server

    def __enter__(self):
        if self.server is not None:
            raise RuntimeError("this DeepDist's with-block is already running: one block at a time")
        if id(self.model) in _SERVED:
            raise RuntimeError("the model is already served by another DeepDist's with-block: a block inside it "
                               "would train a copy, and the outer block's end would drop that training")
        options = dict(self.server_options)
        config = settings(active_spark_conf(), shards=self.shards, host=self.host, advertise=self.advertise,
                          port=self.port, check_finite=options.pop("check_finite", None),
                          encrypt=options.pop("encrypt", None), **self.given_client_options)
        self.client_options = {name: config[name] for name in self.given_client_options}
        arrays = dict(get_arrays(self.model, self.names))
        # The model must take new arrays (a read-only property would not): find out before anything starts.
        set_arrays(self.model, {name: arrays[name] for name in self.names})
        arrays[PROGRESS] = np.zeros(PROGRESS_SIZE)
        # copy_back=False: once the model points at shared memory nothing holds its original arrays, which
        # are freed, and the final values come back in new arrays; the driver holds the parameters once.
        # An array that only the model refers to is moved in, its memory given back as it is copied, so
        # that the start does not hold it twice either. One the caller also holds keeps its values.
        options.setdefault("copy_back", False)
        options.setdefault("move_in", [name for name in self.names if held_only_by_the_model(arrays, name)])
        self.server = ParameterServer(arrays, shards=config["shards"], host=config["host"], port=config["port"],
                                      advertise=config["advertise"], check_finite=config["check_finite"],
                                      encrypt=config["encrypt"], **options).start()
        del arrays
        _SERVED.add(id(self.model))
        try:
            set_arrays(self.model, {name: self.server.params[name] for name in self.names})
        except BaseException:
            _SERVED.discard(id(self.model))
            self.server.stop(raise_dead=False)
            try:  # point what can be pointed at the values the server moved out; the first error is the one
                set_arrays(self.model, {name: self.server.params[name] for name in self.names})
            except Exception:
                pass
            self.server = None
            raise
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            self.server.stop(raise_dead=exc_type is None)
        finally:
            _SERVED.discard(id(self.model))
            # The final values, in private arrays the server moved out of shared memory (or copied back into
            # the model's own, with copy_back=True): point the model at them.
            set_arrays(self.model, {name: self.server.params[name] for name in self.names})
            self.server = None

    def progress_counts(self) -> np.ndarray:
        """Records, words, updates and partitions done so far, summed over every worker (live)."""
        return self.running().params[PROGRESS].copy()

    def train(self, rdd, gradient, descent=None, batch=None, rows=None) -> dict:
        """One pass over ``rdd``: each task pulls the parameters, runs ``gradient(model, data)`` and pushes.

        gradient(model, data): runs on workers with the model's parameters freshly pulled; ``data`` iterates
            over the task's records (a list of the batch's with ``batch`` or ``rows``); returns
            ``{name: dense delta}`` or ``{name: (rows, values)}``.
        descent(model, update): None adds the update; else it is run by each shard on the rows it owns.
        batch: pull and push every ``batch`` records (Downpour SGD) instead of once per partition.
        rows: for models too big to pull whole, ``rows(records) -> {name: row indices}`` names the rows of
            each parameter that ``gradient`` reads for a batch (a list of records; without ``batch`` the
            whole partition, read into a list). Only those are pulled, into full-size arrays that read zero
            elsewhere (a parameter left out is pulled whole); ``gradient`` should return ``(rows, values)``.
        Returns a summary: partitions, records, updates, bytes sent and received, seconds.
        """
        if batch is not None and (isinstance(batch, bool) or not isinstance(batch, numbers.Integral) or batch < 1):
            raise ValueError(f"batch must be a positive whole number of records, got {batch!r}")
        if rows is not None and not callable(rows):
            raise TypeError(f"rows must be a function rows(records) -> {{name: row indices}}, got "
                            f"{type(rows).__name__}")
        job = {"names": self.names, "gradient": gradient, "batch": batch, "rows": rows}
        return self.run(rdd, gradient_task, job, descent)

    def run(self, rdd, task, job: dict, descent=None, parts=None) -> dict:
        """Run ``task(model_broadcast, job, partition_index, iterator)`` over every partition; add up the dicts
        the tasks yield. The model goes out once per job as a broadcast, without its parameter arrays. ``job``
        reaches the tasks with ``address`` (the job's own session, see ``ParameterServer.open_session``) and
        ``client`` (the options for their Clients) added.
        parts: how many passes over a partition the tasks report done in all, for the progress line (default:
        one per partition)."""
        server, context = self.running(), rdd.context
        if descent is not None and not callable(descent):
            raise TypeError(f"descent must be a function descent(model, update), got {type(descent).__name__}")
        # The job's own session: its pushes go through its descent, and once it is closed nothing its tasks
        # still send (a failed job's other tasks run on until Spark stops them; speculative copies may outlive
        # a job) is applied. So train returns, or raises, with the model settled.
        address = server.open_session(None if descent is None else DescentKeepingProgress(descent))
        # A custom descent sees the rows a push names: a dense delta goes as it is, all of its rows.
        client = self.client_options if descent is None else dict(self.client_options, sparsify=False)
        job = dict(job, address=address, client=client)
        model = reporter = None
        try:
            model = context.broadcast(pickle_function(strip(self.model, self.names)))
            started = time.monotonic()
            reporter = Progress(self, parts or rdd.getNumPartitions()) if self.progress else None
            results = rdd.mapPartitionsWithIndex(lambda index, data: task(model, job, index, data)).collect()
        except BaseException:
            try:
                server.close_session(address)
            except Exception as error:  # a dead shard, say: the job's own error is the one to see
                log.warning("deepdist: could not close the failed job's session: %s", error)
            raise
        else:
            server.close_session(address)
        finally:
            forget_cached(self.model)  # the job changed the live arrays, if it ran at all
            if reporter:
                reporter.stop()
            if model is not None:
                model.destroy()
        server.check()
        summary = dict.fromkeys(("partitions", "records", "updates", "bytes_sent", "bytes_received"), 0)
        for result in results:
            for key, value in result.items():
                summary[key] = summary.get(key, 0) + value
        summary["task_seconds"] = summary.pop("seconds", 0.0)
        summary["seconds"] = time.monotonic() - started
        if self.progress:
            print(f"deepdist: {format_summary(summary)}", file=sys.stderr, flush=True)
        return summary


class Progress:
    """Progress on stderr while a job runs: partitions done, records/s, words/s, updates/s.

    On a terminal one line, rewritten in place every PROGRESS_INTERVAL seconds. Anywhere else (a
    spark-submit driver's log file, a pipe) carriage returns would pile every refresh into one endless
    line: a whole line every PROGRESS_LOG_INTERVAL seconds instead. Either way a last line when it stops.
    """

    def __init__(self, dd: DeepDist, partitions: int, stream=None):
        self.dd, self.partitions = dd, partitions
        self.stream = sys.stderr if stream is None else stream
        self.terminal = _is_terminal(self.stream)
        self.start_counts, self.started = dd.progress_counts(), time.monotonic()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.loop, name="deepdist-progress", daemon=True)
        self.thread.start()

    def loop(self):
        while not self.done.wait(PROGRESS_INTERVAL if self.terminal else PROGRESS_LOG_INTERVAL):
            self.show(last=False)

    def show(self, last: bool) -> None:
        if self.terminal:
            print("\r" + self.line(), end="\n" if last else "", file=self.stream, flush=True)
        else:
            print(self.line(), file=self.stream, flush=True)

    def line(self) -> str:
        counts = self.dd.progress_counts() - self.start_counts
        seconds = max(time.monotonic() - self.started, 1e-9)
        parts = [f"partitions {int(counts[PARTITIONS])}/{self.partitions}",
                 f"{counts[RECORDS] / seconds:,.0f} records/s"]
        if counts[WORDS]:
            parts.append(f"{counts[WORDS] / seconds:,.0f} words/s")
        parts.append(f"{counts[UPDATES] / seconds:,.0f} updates/s")
        return "deepdist: " + " | ".join(parts)

    def stop(self):
        self.done.set()
        self.thread.join(2 * PROGRESS_INTERVAL)
        self.show(last=True)


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def held_only_by_the_model(arrays: dict, name) -> bool:
    """Whether nothing but the model and ``arrays`` refers to ``arrays[name]``; a view of it, a memoryview or a
    name the caller kept adds a reference. Counted beside an array that only one dict holds, the same way,
    so that the answer does not depend on how a Python version counts its own temporary references."""
    alone = {name: np.empty(0)}
    return sys.getrefcount(arrays[name]) <= sys.getrefcount(alone[name]) + 1


def format_summary(summary: dict) -> str:
    seconds = max(summary["seconds"], 1e-9)
    text = (f"{summary.get('partitions', 0)} partitions, {summary.get('records', 0):,} records, "
            f"{summary.get('updates', 0):,} updates in {seconds:.1f} s")
    if summary.get("words"):
        text += f", {summary['words'] / seconds:,.0f} words/s"
    sent, received = summary.get("bytes_sent", 0), summary.get("bytes_received", 0)
    return text + f", {sent / 1e6:,.1f} MB pushed, {received / 1e6:,.1f} MB pulled"


def active_spark_conf():
    """The active SparkContext's configuration, or None (no SparkContext, or no pyspark)."""
    try:
        from pyspark import SparkContext
    except ImportError:
        return None
    context = SparkContext._active_spark_context
    return None if context is None else context.getConf()
