"""ParameterServer: owns the shared-memory parameters and starts, watches and stops the shard processes.

Shards are started as ``python -m deepdist.shard`` rather than with multiprocessing: spawning through
multiprocessing re-imports the caller's ``__main__``, which re-runs any driver script that lacks a
``__main__`` guard (most Spark jobs). A shard's standard input is its lifeline: closing it asks the shard to
stop, and a shard whose server dies sees end of file and exits.
"""
from __future__ import annotations

import base64
import contextlib
import dataclasses
import itertools
import json
import logging
import math
import numbers
import os
import secrets
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import zmq

from . import kernels, protocol as P, shm
from .errors import DeepDistError, ShardDied
from .sharding import WILDCARDS, ServerAddress, owned, plan, tcp_endpoint

log = logging.getLogger("deepdist.server")

WATCH_INTERVAL = 0.2      # seconds between checks that every shard is alive
MIN_MESSAGE_LIMIT = 256 << 20  # bytes: the per-frame limit is at least this, or twice the largest parameter
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class ParameterServer:
    """Serve ``params`` (``{name: float32 or float64 array}``) from ``shards`` processes.

    host: the address shards bind to ('0.0.0.0' for every interface).
    port: 0 for free ports, else shard i binds ``port + i``.
    advertise: the host clients should dial (default: ``host``, or this machine's name if host is a wildcard).
    start_timeout, stop_timeout: seconds allowed for shards to come up and to exit.
    check_finite: refuse parameters holding NaN or infinity, and pushes that hold them or whose sums would
        overflow to infinity (one extra read of each update; see ``Shard.check_growth``).
    encrypt: ZeroMQ's CURVE on every connection: traffic is encrypted, and shards serve only clients that
        hold the client key pair made for this server, which ``address`` carries (keep it as secret as the
        parameters; docs/protocol.md, section 6).
    copy_back: True: the server keeps the arrays given, and copies the final values back into them. False: it
        lets go of them once they are in shared memory, so the caller can free them while the server runs,
        and hands the final values back in new arrays (``ps.params``), moving them out of shared memory block
        by block: the parameters are held once, not twice.
    move_in: names of given arrays the caller hands over: each is moved into shared memory block by block,
        its pages given back to the system as they are copied, so that the start does not hold the
        parameters twice either; while the server runs those arrays read zeros (``shm.create(move=True)``;
        an array that does not own its memory, or not on Linux, is copied and left as it is).

    Inside the ``with`` block ``ps.params[name]`` is a live, zero-copy view of the master parameter. After it,
    ``ps.params`` holds the final values as private arrays: the arrays given, written (for read-only ones, new
    arrays that replace them in ``params``), or with ``copy_back=False`` new arrays. No shared memory is left
    behind: a view of it kept past the block keeps only its own mapping alive, unlinked, and reads the final
    values (zeros with ``copy_back=False``, where they were moved out); use ``ps.params`` instead.
    """

    def __init__(self, params, shards: int = 2, host: str = "127.0.0.1", port: int = 0, advertise=None,
                 start_timeout: float = 30.0, stop_timeout: float = 10.0, check_finite: bool = True,
                 copy_back: bool = True, move_in=(), encrypt: bool = False):
        if isinstance(shards, bool) or not isinstance(shards, numbers.Integral) or shards < 1:
            raise ValueError(f"shards must be a whole number, at least 1, got {shards!r}")
        if len(params) > P.MAX_ITEMS:
            raise ValueError(f"{len(params)} parameters, more than the {P.MAX_ITEMS} one request can carry: "
                             f"concatenate small ones into fewer arrays")
        for name, array in params.items():
            check_param(name, array)
        names = list(params)
        for i, first in enumerate(names):
            for second in names[i + 1:]:
                if np.may_share_memory(params[first], params[second]):
                    raise ValueError(f"parameters '{first}' and '{second}' share memory: each needs an array of "
                                     f"its own (their final values would overwrite each other)")
        self.given = params
        self.copy_back = copy_back
        self.move_in = frozenset(move_in)
        unknown = self.move_in - set(params)
        if unknown:
            raise KeyError(f"move_in names {sorted(unknown)}, which are not among the parameters {sorted(params)}")
        self.n_shards = shards
        self.host, self.port = host, port
        self.advertise = advertise or (socket.getfqdn() if host in WILDCARDS else host)
        self.start_timeout, self.stop_timeout = start_timeout, stop_timeout
        self.check_finite = check_finite
        self.encrypt = encrypt
        self.keys = None  # with encrypt: the shards' key pair and the clients' (made when the server starts)
        self.specs = plan(params, shards)
        self.params = dict(params)
        self.address = None
        self.segments, self.processes = {}, []
        self.dead = {}  # shard index -> exit code, for shards that exited while serving
        self.stopping = threading.Event()
        self.watcher = None
        self.commands = threading.Lock()  # one command on the shards' pipes at a time (trains in threads)
        self.output = {}  # shard index -> bytes read from its standard output that are not a whole line yet
        self.command_numbers = itertools.count(1)  # each command's number, which the shards' answers repeat

    # -- lifecycle -----------------------------------------------------------------------------------------
    def __enter__(self):
        self.start()
        return self

    def __exit__(self, exc_type, exc, tb):
        self.stop(raise_dead=exc_type is None)

    def start(self) -> "ParameterServer":
        try:
            # One at a time into self.segments, so that a failure part way unlinks those made and hands
            # back their values (into the given arrays: moved-in ones read zeros until then).
            for i, (name, array) in enumerate(self.given.items()):
                self.segments[name] = shm.create(array, tag=str(i), move=name in self.move_in)
                if self.check_finite and not math.isfinite(kernels.max_abs(self.segments[name].array.reshape(-1))):
                    raise ValueError(f"parameter '{name}' holds NaN or infinity: with check_finite (the default) "
                                     f"a server holds finite values only")
            self.params = {name: segment.array for name, segment in self.segments.items()}
            server_id = random_id()
            if self.encrypt:
                self.keys = [key.decode() for pair in (zmq.curve_keypair(), zmq.curve_keypair()) for key in pair]
            largest = max((array.nbytes for array in self.given.values()), default=0)
            limit = max(MIN_MESSAGE_LIMIT, 2 * largest + (1 << 20))
            for index in range(self.n_shards):
                self.start_shard(index, server_id, limit)
            endpoints = [self.wait_ready(index, process) for index, process in enumerate(self.processes)]
        except BaseException:
            self.stop(raise_dead=False)
            raise
        if not self.copy_back:
            self.given = None  # shared memory holds the values now; the caller may free the originals
        client_keys = None if self.keys is None else (self.keys[0], *self.keys[2:])  # not the shards' secret
        self.address = ServerAddress(tuple(endpoints), server_id, tuple(self.specs.values()), limit,
                                     self.check_finite, client_keys)
        self.watcher = threading.Thread(target=self.watch, name="deepdist-shard-watcher", daemon=True)
        self.watcher.start()
        return self

    def start_shard(self, index: int, server_id: int, limit: int) -> None:
        ranges = owned(self.specs, index)
        config = {
            "shard": index, "server_id": server_id, "host": self.host,
            "port": self.port + index if self.port else 0, "check_finite": self.check_finite,
            "max_message_bytes": limit,
            # The shards' key pair and the clients' public key: over the private pipe, never the network.
            "curve": None if self.keys is None else self.keys[:3],
            "params": [{"name": name, "segment": segment.name, "dtype": segment.array.dtype.str,
                        "shape": list(segment.array.shape),
                        "lo": ranges.get(name, (None, None))[0], "hi": ranges.get(name, (None, None))[1]}
                       for name, segment in self.segments.items()],
        }
        # Run from the folder holding this very deepdist: 'python -m' puts the working directory first on
        # sys.path, so the shard imports the package the server runs (not, say, an unbuilt source tree).
        process = subprocess.Popen([sys.executable, "-m", "deepdist.shard"], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, cwd=PACKAGE_ROOT)
        self.processes.append(process)
        process.stdin.write(json.dumps(config).encode() + b"\n")
        process.stdin.flush()

    def wait_ready(self, index: int, process: subprocess.Popen) -> str:
        """The endpoint clients should dial, once the shard has bound its socket."""
        line = self.read_line(index, process, self.start_timeout, "start")
        if line.startswith("ERROR "):
            ports = (f" (shard i listens on port + i: here {self.port} to {self.port + self.n_shards - 1}; port=0 "
                     f"takes free ports)" if self.port else "")
            raise DeepDistError(f"shard {index} {line[len('ERROR '):]}{ports}")
        if not line.startswith("READY "):
            raise ShardDied(f"shard {index} said {line!r} instead of READY")
        return tcp_endpoint(self.advertise, line.rsplit(":", 1)[1])

    def read_line(self, index: int, process: subprocess.Popen, timeout: float, doing: str) -> str:
        """The shard's next line on its standard output, within ``timeout`` seconds.

        Read with os.read into a buffer of our own: a buffered readline could take a late answer and the
        next together, return the first, and leave the second where select() cannot see it."""
        pending = self.output.get(index, b"")
        deadline = time.monotonic() + timeout
        while b"\n" not in pending:
            with selectors.DefaultSelector() as selector:
                selector.register(process.stdout, selectors.EVENT_READ)
                if not selector.select(max(0.0, deadline - time.monotonic())):
                    if process.poll() is None:
                        raise DeepDistError(f"shard {index} (pid {process.pid}) is running but did not {doing} "
                                            f"within {timeout:g} s: busy (a custom descent that slow?) or stuck")
                    raise ShardDied(f"shard {index} (pid {process.pid}) exited with "
                                    f"{describe_exit(process.returncode)} before it could {doing}")
            chunk = os.read(process.stdout.fileno(), 1 << 16)
            if not chunk:
                if self.stopping.is_set():
                    raise DeepDistError(f"the server stopped while shard {index} was to {doing}")
                raise ShardDied(f"shard {index} exited with {describe_exit(process.wait(self.stop_timeout))} "
                                f"while it was to {doing} (see its error above)")
            pending += chunk
        line, _, self.output[index] = pending.partition(b"\n")
        return line.decode().strip()

    def open_session(self, descent=None) -> ServerAddress:
        """An address for one job: requests sent to it are served, their pushes applied with
        ``descent(model, update)`` (None: added), until ``close_session``; then they are refused.

        descent is pickled (with cloudpickle when available, so lambdas and closures work) and handed to the
        shards over their private pipes, with this process's ``sys.path`` so that a descent imported from the
        driver's own modules loads there; see ``Shard.run_descent`` for what it is called with. Several
        sessions may be open at once, each with its own descent.
        """
        session = random_id()
        while session == self.address.server_id:
            session = random_id()
        blob = None if descent is None else base64.b64encode(pickle_function(descent)).decode()
        path = [os.path.abspath(folder) for folder in sys.path]  # '' is the working directory
        try:
            errors = self.command({"open": session, "descent": blob, "path": path}, "open a session")
        except DeepDistError:
            # A shard that did not answer in time may still open the session later: close it everywhere, so
            # that nothing is ever served under an id whose open failed.
            try:
                self.close_session(dataclasses.replace(self.address, server_id=session))
            except DeepDistError:
                pass  # the error above says what went wrong first
            raise
        if errors:
            self.close_session(dataclasses.replace(self.address, server_id=session))
            index, answer = errors[0]
            raise DeepDistError(f"shard {index} could not install the descent: {answer}")
        return dataclasses.replace(self.address, server_id=session)

    def close_session(self, address: ServerAddress) -> None:
        """Refuse every request sent to ``address`` (from ``open_session``) from now on. Returns once every
        shard has closed it: no push sent to it is applied after this."""
        errors = self.command({"close": address.server_id}, "close a session")
        if errors:
            index, answer = errors[0]
            raise DeepDistError(f"shard {index} could not close a session: {answer}")

    def command(self, command: dict, doing: str) -> list:
        """Send ``command`` to every shard and read every answer; the shards that did not answer OK, with
        their answers. A dead shard raises ShardDied."""
        with self.commands:
            number = next(self.command_numbers)
            line = json.dumps(dict(command, id=number)).encode() + b"\n"
            self.check()
            stopping = DeepDistError(f"the server is stopping: cannot {doing}")
            if self.stopping.is_set():
                raise stopping
            for process in self.processes:
                try:
                    process.stdin.write(line)
                    process.stdin.flush()
                except ValueError:  # the pipe is closed: stop() began since the check above
                    raise stopping from None
                except (BrokenPipeError, ConnectionResetError):
                    self.check()  # the shard died since: ShardDied says which and how
                    raise
            # Every shard's answer is read, even after a bad one, so that none is left in a pipe.
            answers = [(index, self.read_answer(index, process, number, doing))
                       for index, process in enumerate(self.processes)]
        return [(index, answer) for index, answer in answers if answer != "OK"]

    def read_answer(self, index: int, process: subprocess.Popen, number: int, doing: str) -> str:
        """The shard's answer to command ``number``. Answers to earlier commands that timed out are passed
        over (each within ``start_timeout`` of the one before): a late answer is never taken for this one's."""
        while True:
            line = self.read_line(index, process, self.start_timeout, doing)
            answered, _, answer = line.partition(" ")
            if answered == str(number):
                return answer

    def watch(self) -> None:
        """Report a shard that dies while serving as soon as it happens (its clients only see timeouts)."""
        while not self.stopping.wait(WATCH_INTERVAL):
            self.find_dead()

    def find_dead(self) -> dict:
        for index, process in enumerate(self.processes):
            code = process.poll()
            if code is not None and index not in self.dead and not self.stopping.is_set():
                self.dead[index] = code
                log.error("deepdist shard %d (pid %d) died with %s", index, process.pid, describe_exit(code))
        return self.dead

    def check(self) -> None:
        """Raise ShardDied if any shard has died."""
        if self.find_dead():
            raise ShardDied("; ".join(f"shard {index} died with {describe_exit(code)}"
                                      for index, code in sorted(self.dead.items())))

    def stop(self, raise_dead: bool = True) -> None:
        """Stop the shards, hand the final values back, unlink shared memory; then raise ShardDied if a shard
        had died (unless ``raise_dead`` is false, as when an exception is already on its way)."""
        if self.stopping.is_set():
            return
        self.find_dead()
        self.stopping.set()
        if self.watcher is not None:
            self.watcher.join(2 * WATCH_INTERVAL)
        try:
            self.stop_shards()
        finally:
            self.release()
        if raise_dead:
            self.check()

    def stop_shards(self) -> None:
        for process in self.processes:
            if process.stdin and not process.stdin.closed:
                try:
                    process.stdin.close()
                except BrokenPipeError:
                    pass
        deadline = time.monotonic() + self.stop_timeout
        for process in self.processes:
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("deepdist shard pid %d did not stop within %g s; killing it",
                            process.pid, self.stop_timeout)
                process.kill()
                process.wait(self.stop_timeout)
            if process.stdout:
                process.stdout.close()

    def release(self) -> None:
        """Hand the final values back (into the caller's arrays, or moved out into new ones) and unlink
        every segment, all of them even if handing one back fails (its error is raised after). A Ctrl-C
        meanwhile waits until every parameter is whole again: moving out gives each block's shared pages
        back as it goes, and an interrupt part way would leave the caller a parameter that reads zeros."""
        with sigint_held():
            failed = self.hand_back()
        if failed is not None:
            raise failed

    def hand_back(self):
        """``release``'s work: the first error met, if any (every segment is handed back and unlinked)."""
        failed = None
        for name, segment in self.segments.items():
            try:
                if self.given is None:
                    self.params[name] = segment.move_out()
                else:
                    final, given = segment.array, self.given[name]
                    if given.flags.writeable:
                        np.copyto(given, final)
                    else:
                        self.given[name] = final.copy()
                    self.params[name] = self.given[name]
            except BaseException as error:
                failed = failed or error
            finally:
                segment.unlink()
                segment.close()
        self.segments = {}
        return failed


@contextlib.contextmanager
def sigint_held():
    """Hold SIGINT (Ctrl-C) while the block runs, then deliver it to the handler it would have reached: for
    work that must not stop half done. Python runs signal handlers in the main thread only; elsewhere, or
    when the handler was not installed from Python, this holds nothing."""
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or previous is None:
        yield
        return
    held = []
    signal.signal(signal.SIGINT, lambda signum, frame: held.append(frame))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if held:
            if callable(previous):
                previous(signal.SIGINT, held[0])
            elif previous == signal.SIG_DFL:
                signal.raise_signal(signal.SIGINT)


def check_param(name, array) -> None:
    if not isinstance(name, str):
        raise TypeError(f"parameter names must be strings, got {name!r}")
    if not isinstance(array, np.ndarray):
        raise TypeError(f"parameter '{name}' must be a numpy array, got {type(array).__name__}")
    if array.dtype not in (np.dtype("<f4"), np.dtype("<f8")):
        raise TypeError(f"parameter '{name}' is {array.dtype}; deepdist serves float32 and float64")
    if array.ndim < 1 or array.shape[0] < 1:
        raise ValueError(f"parameter '{name}' has shape {array.shape}; it needs at least one row")


def describe_exit(code: int) -> str:
    return f"signal {-code}" if code < 0 else f"exit code {code}"


def random_id() -> int:
    """A server or session id: 64 random bits, never 0."""
    return secrets.randbits(64) or 1


def pickle_function(function) -> bytes:
    try:
        import cloudpickle
    except ImportError:
        try:
            from pyspark import cloudpickle
        except ImportError:
            import pickle as cloudpickle
    return cloudpickle.dumps(function)
