"""The client: push updates to and pull parameters from the shards of a ParameterServer.

One DEALER socket per shard. A push is cut by owner and sent to every shard it concerns before waiting for
anything, so shards work concurrently, and it returns without waiting for the acknowledgements (up to
``window`` unacknowledged pushes per shard); ``flush``, ``pull`` and ``close`` collect them and raise the first
error any earlier push met. Arrays go out as raw zero-copy frames: an array given to ``push`` must not be
modified until the next ``flush``, ``pull`` or ``close`` returns, as with ``zmq.Socket.send(copy=False)``.
"""
from __future__ import annotations

import collections
import functools
import json
import math
import numbers
import os
import struct
import threading
import weakref

import numpy as np
import zmq

from . import kernels, protocol as P
from .errors import RequestError, ShardTimeout
from .frames import recv_frames, send_frames
from .sharding import is_ipv6, split_by_owner

DENSE_SAMPLE = 64  # rows of a dense delta looked at before deciding to scan it for sparse rows


# ZeroMQ's send and receive timeouts are whole milliseconds in a C int.
MIN_TIMEOUT, MAX_TIMEOUT = 0.001, (2**31 - 1) / 1000
# Requests in flight per shard: well below the messages each end of a connection queues, so that no reply is
# dropped however long the client waits before reading them (protocol.HIGH_WATER_MARK).
MAX_WINDOW = P.HIGH_WATER_MARK // 2
HALF_LARGEST = float(np.finfo(np.float16).max)


def check_timeout(timeout, where: str) -> None:
    """A ValueError naming ``where`` unless ``timeout`` is seconds ZeroMQ can wait: 1 ms to about 24 days."""
    if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real) or not (
            MIN_TIMEOUT <= timeout <= MAX_TIMEOUT):
        raise ValueError(f"{where} must be seconds from {MIN_TIMEOUT:g} to {MAX_TIMEOUT:g} (ZeroMQ waits whole "
                         f"milliseconds, at most 2**31 - 1), got {timeout!r}")


def exclusive(method):
    """A Client method that one thread at a time may call, in the process that made the Client: ZeroMQ
    sockets are not thread-safe, and a forked child must not touch its parent's (libzmq would hang). Either
    mistake is a clear RuntimeError instead of misread replies or a hang."""
    @functools.wraps(method)
    def guarded(self, *args, **kwargs):
        if self.pid != os.getpid():
            raise RuntimeError("this Client was made in another process (this one is a fork of it): make a new "
                               "Client(address) here")
        if not self.in_use.acquire(blocking=False):
            raise RuntimeError("this Client is in use by another thread: ZeroMQ sockets are not thread-safe, "
                               "make one Client per thread")
        try:
            return method(self, *args, **kwargs)
        finally:
            self.in_use.release()
    return guarded


def close_connection(pid: int, context: zmq.Context, sockets: list) -> None:
    """Close ``sockets`` without lingering and terminate ``context``: what ``Client.close`` does, and what
    dropping a Client does (a ``weakref.finalize``). The finalizer holds the context and sockets, so they
    outlive the Client and are closed in this order even when a reference cycle (an exception's traceback)
    frees it: the collector could otherwise finalize the context first, whose term() then waits for ever on
    sockets not yet closed. Not in a forked child, where the parent's ZeroMQ state must be left alone."""
    if os.getpid() != pid:
        return
    for socket in sockets:
        socket.close(linger=0)
    context.term()


class Client:
    """Talks to every shard of the server at ``address`` (a ``ps.address``); usable from any process, by one
    thread at a time (make one per thread, and a new one after a fork).

    timeout: seconds to wait for any one reply or send before raising ShardTimeout.
    window: requests (pushes, and pulls not yet collected) in flight per shard before the next waits for
        replies; 1 to ``MAX_WINDOW``.
    sparsify: send a dense delta as sparse rows when that is fewer bytes (most rows zero).
    wire_dtype: None (values travel in their parameter's dtype) or ``"float16"``: the half-precision wire. The
        values of float32 parameters then travel as float16, half the bytes: pushed values are rounded to
        float16 before they are sent (and must lie within +-65504), pulls return float32 arrays of the values
        rounded to float16. The parameters stay float32 on the shards, which add the pushes in float32.
    """

    def __init__(self, address, timeout: float = 60.0, window: int = 32, sparsify: bool = True,
                 wire_dtype=None):
        check_timeout(timeout, "timeout")
        if isinstance(window, bool) or not isinstance(window, numbers.Integral) or not 1 <= window <= MAX_WINDOW:
            raise ValueError(f"window must be a whole number from 1 to {MAX_WINDOW}, got {window!r}")
        self.address = address
        self.specs = {spec.name: spec for spec in address.params}
        self.index = {spec.name: i for i, spec in enumerate(address.params)}
        self.dtypes = {spec.name: np.dtype(spec.dtype) for spec in address.params}
        self.largest = {name: float(np.finfo(dtype).max) for name, dtype in self.dtypes.items()}  # for scale
        half = check_wire_dtype(wire_dtype) is not None
        # The dtype each parameter's values travel in: float16 for float32 parameters on the half wire.
        self.wire = {name: P.DTYPES[P.HALF_CODE] if half and dtype == P.HALF_FOR else dtype
                     for name, dtype in self.dtypes.items()}
        self.wire_codes = {name: P.DTYPE_CODES[dtype] for name, dtype in self.wire.items()}
        self.row_bytes = {spec.name: spec.row_size * self.wire[spec.name].itemsize for spec in address.params}
        owned = [0] * len(address.endpoints)
        for spec in address.params:
            for shard, lo, hi in spec.ranges:
                owned[shard] += (hi - lo) * self.row_bytes[spec.name]
        self.answer_limits = [P.pull_answer_limit(address.max_message_bytes, size) for size in owned]
        # What a pull of a whole parameter asks each shard, and where each answer goes: the same every time.
        self.whole_pulls = {spec.name: [(shard, P.Item(self.index[spec.name], P.KIND_DENSE,
                                                      self.wire_codes[spec.name], hi - lo), slice(lo, hi))
                                        for shard, lo, hi in spec.ranges] for spec in address.params}
        self.timeout = timeout
        self.window = window
        self.sparsify = sparsify
        self.client_id = struct.unpack("<Q", os.urandom(8))[0] or 1
        self.seq = 0
        self.pid, self.in_use = os.getpid(), threading.RLock()
        self.context = zmq.Context()
        self.sockets = []
        self.closer = weakref.finalize(self, close_connection, self.pid, self.context, self.sockets)
        for endpoint in address.endpoints:
            socket = self.context.socket(zmq.DEALER)
            socket.linger = 0
            # A blocking recv with a timeout is one call where a poll and then a recv are two (about 10 us
            # of a pull's client thread per reply, measured).
            socket.sndtimeo = socket.rcvtimeo = round(timeout * 1000)
            socket.sndhwm = socket.rcvhwm = P.HIGH_WATER_MARK
            socket.ipv6 = is_ipv6(endpoint)
            if address.keys is not None:  # the server encrypts: CURVE, with the key pair it made for clients
                socket.curve_serverkey, socket.curve_publickey, socket.curve_secretkey = (
                    key.encode() for key in address.keys)
            socket.connect(endpoint)
            self.sockets.append(socket)
        self.pending = [collections.deque() for _ in self.sockets]  # (seq, op) sent and not yet answered
        self.failures = []  # rejected pushes, raised at the next flush, pull or close
        self.unclaimed = {}  # (shard, seq) -> data frames or error of a pull answered before it was awaited
        self.abandoned = set()  # (shard, seq) of a failed pull's answers still to come: dropped as they arrive
        self.bytes_sent = self.bytes_received = 0  # payload and headers, for traffic reports

    # -- public API ----------------------------------------------------------------------------------------
    @exclusive
    def push(self, update: dict, scale: float = 1.0) -> None:
        """Add ``scale * update`` to the parameters: ``{name: dense delta}`` or ``{name: (rows, values)}``."""
        if not isinstance(scale, numbers.Real):
            raise TypeError(f"scale must be a real number, got {type(scale).__name__}")
        scale = float(scale)  # a numpy float32 would compare with the float64 limits below in float32
        if not math.isfinite(scale):
            raise ValueError(f"scale must be finite, got {scale}")
        per_shard = collections.defaultdict(list)  # shard -> [(Item, data frames)]
        for name, value in update.items():
            spec = self.spec(name)
            if abs(scale) > self.largest[name]:
                raise ValueError(f"scale {scale:g} is beyond the range of {self.dtypes[name]}, the dtype of "
                                 f"'{name}'")
            if isinstance(value, tuple):
                self.cut_rows(spec, *self.check_rows(spec, *value), per_shard)
            else:
                self.cut_dense(spec, self.check_values(spec, value, spec.shape, f"update of '{name}'"), per_shard)
        if len(per_shard) > 1 and self.address.check_finite:
            self.check_finite(per_shard, scale)
        self.request(P.OP_PUSH, per_shard, scale)

    @exclusive
    def flush(self) -> None:
        """Return once every earlier push is applied; raise the first error any of them met."""
        self.check_open()
        for shard in range(len(self.pending)):
            self.read_replies(shard, self.last_push(shard))
        self.raise_failures()

    @exclusive
    def pull(self, names=None, rows=None) -> dict:
        """Private copies of the named parameters (all by default), or of their rows ``rows`` only.

        rows: None (whole parameters), one index array for every named parameter, or ``{name: rows or None}``
        to read different rows of each parameter in one round trip (names default to its keys).

        One round trip, with no flush before it: a shard serves one client's requests in the order they were
        sent, so the pull already reads every earlier push applied, and their replies (read on the way to the
        pull's) raise any error they carry once the pull's own reply is in.
        """
        return self.pull_async(names, rows).result()

    @exclusive
    def pull_async(self, names=None, rows=None) -> "PendingPull":
        """Send a pull and return at once; its ``result()`` waits for it and returns what ``pull`` would.

        The values are those the shards hold when they reach the request: after every push this client sent
        before it, before any it sends after. Pushing while a pull is pending is how a worker overlaps the
        next pull with its computation (ps-lite's ZPull and Wait). A reply that arrives before ``result()`` is
        asked for is kept until then.
        """
        if names is None and isinstance(rows, dict):
            names = list(rows)
        names = list(self.specs) if names is None else [names] if isinstance(names, str) else list(names)
        rows_of = rows if isinstance(rows, dict) else dict.fromkeys(names, rows)
        per_shard = collections.defaultdict(list)  # shard -> [(Item, data frames)]
        targets = collections.defaultdict(list)    # shard -> [(name, where its returned frame goes)]
        answer = {}                                 # shard -> bytes it will answer with
        shapes = {}                                 # name -> shape of the array pulled
        for name in names:
            spec = self.spec(name)
            if rows_of.get(name) is None:
                shapes[name] = spec.shape
                for shard, item, where in self.whole_pulls[name]:
                    per_shard[shard].append((item, []))
                    targets[shard].append((name, where))
                    answer[shard] = answer.get(shard, 0) + item.n_rows * self.row_bytes[name]
            else:
                wanted = self.check_row_indices(spec, rows_of[name])
                shapes[name] = (len(wanted),) + spec.row_shape
                code = self.wire_codes[name]
                for shard, selector in split_by_owner(spec, wanted):
                    part = wanted[selector]
                    per_shard[shard].append((P.Item(self.index[name], P.KIND_ROWS, code, len(part)), [part]))
                    targets[shard].append((name, selector))
                    answer[shard] = answer.get(shard, 0) + len(part) * self.row_bytes[name]
        for shard, size in answer.items():
            if size > self.answer_limits[shard]:
                raise ValueError(f"shard {shard} would answer this pull with {size} bytes, more than its limit "
                                 f"of {self.answer_limits[shard]} bytes: pull fewer rows at a time")
        # The pushes sent before this pull to shards it does not read: result() waits for them too.
        earlier = {shard: self.last_push(shard) for shard in range(len(self.pending)) if shard not in per_shard}
        return PendingPull(self, self.request(P.OP_PULL, per_shard), shapes, targets, earlier)

    @exclusive
    def stats(self) -> list:
        """Per shard: pushes, pulls, bytes in and out, errors (by code), duplicates, clients seen."""
        seq = self.request(P.OP_STATS, {shard: [] for shard in range(len(self.sockets))})
        return [json.loads(bytes(self.await_reply(shard, seq)[0].buffer)) for shard in range(len(self.sockets))]

    @exclusive
    def close(self, flush: bool = True) -> None:
        """Flush (unless told not to), then close the sockets; raises what ``flush`` raises (the sockets are
        closed regardless). Without the flush, pushes already sent may still be applied, or may not."""
        if self.context is None:
            return
        try:
            if flush:
                self.flush()
        finally:
            self.closer()
            self.context = None

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, traceback):
        # With an exception in flight (a task failing, a shard timing out) waiting for acknowledgements
        # would only delay the report, up to another full timeout; the exception says what went wrong.
        self.close(flush=exc_type is None)

    # -- checking the caller's arrays (before anything is sent) --------------------------------------------
    def spec(self, name):
        try:
            return self.specs[name]
        except KeyError:
            raise KeyError(f"unknown parameter {name!r}; this server has {sorted(self.specs)}") from None

    @staticmethod
    def check_values(spec, values, shape, what) -> np.ndarray:
        if not isinstance(values, np.ndarray):
            raise TypeError(f"{what}: expected a numpy array, got {type(values).__name__}")
        if values.dtype != np.dtype(spec.dtype):
            raise TypeError(f"{what}: dtype {values.dtype}, parameter '{spec.name}' is {np.dtype(spec.dtype)}")
        if values.shape != tuple(shape):
            raise ValueError(f"{what}: shape {values.shape}, expected {tuple(shape)}")
        return np.ascontiguousarray(values)

    def check_row_indices(self, spec, rows) -> np.ndarray:
        rows = np.asarray(rows)
        if rows.ndim != 1 or not (rows.dtype.kind in "iu" or rows.size == 0):
            raise TypeError(f"rows for '{spec.name}' must be a 1-D integer array, got {rows.dtype} {rows.shape}")
        given, rows = rows, np.ascontiguousarray(rows, P.ROW_DTYPE)
        if kernels.first_row_outside(rows, 0, spec.n_rows) >= 0:  # uint64 beyond int64 wraps to negative here
            raise IndexError(f"rows for '{spec.name}' must be in [0, {spec.n_rows}), got "
                             f"[{given.min()}, {given.max()}]")
        return rows

    def check_rows(self, spec, rows, values):
        rows = self.check_row_indices(spec, rows)
        values = self.check_values(spec, values, (len(rows),) + spec.row_shape, f"values for '{spec.name}'")
        return rows, values

    # -- cutting an update by owner ------------------------------------------------------------------------
    def cut_dense(self, spec, delta, per_shard) -> None:
        dtype_code, wire = self.wire_codes[spec.name], self.wire[spec.name]
        flat = delta.reshape(spec.n_rows, -1)
        for shard, lo, hi in spec.ranges:
            part = flat[lo:hi]
            if self.sparsify and not looks_dense(part):
                nonzero = kernels.nonzero_rows(part)
                # Rows cost their values plus an 8-byte index: cheaper once most rows are zero.
                if len(nonzero) * (part.shape[1] * wire.itemsize + 8) < part.size * wire.itemsize:
                    if len(nonzero):
                        values = np.empty((len(nonzero), part.shape[1]), wire)
                        kernels.gather(part, nonzero, values)
                        per_shard[shard].append((P.Item(self.index[spec.name], P.KIND_ROWS, dtype_code,
                                                        len(nonzero)), [nonzero + lo, self.fits(spec, values)]))
                    continue
            per_shard[shard].append((P.Item(self.index[spec.name], P.KIND_DENSE, dtype_code, hi - lo),
                                     [self.to_wire(spec, part)]))

    def cut_rows(self, spec, rows, values, per_shard) -> None:
        dtype_code, wire = self.wire_codes[spec.name], self.wire[spec.name]
        flat = values.reshape(len(rows), spec.row_size)  # -1 cannot be worked out for no rows
        for shard, selector in split_by_owner(spec, rows):
            part_rows = rows[selector]
            if isinstance(selector, slice):
                part_values = self.to_wire(spec, flat[selector])
            else:
                part_values = np.empty((len(selector), flat.shape[1]), wire)
                kernels.gather(flat, selector, part_values)
                self.fits(spec, part_values)
            per_shard[shard].append((P.Item(self.index[spec.name], P.KIND_ROWS, dtype_code, len(part_rows)),
                                     [part_rows, part_values]))

    def to_wire(self, spec, values) -> np.ndarray:
        """``values`` (contiguous rows) in the dtype they travel in: themselves, or rounded to float16."""
        wire = self.wire[spec.name]
        if values.dtype == wire:
            return values
        half = np.empty(values.shape, wire)
        kernels.narrow(values.reshape(-1), half.reshape(-1))
        return self.fits(spec, half)

    def check_finite(self, per_shard: dict, scale: float) -> None:
        """Refuse, before anything is sent, a push that a shard would refuse for its values alone (NaN,
        infinity, or ``scale * value`` beyond the dtype): each shard checks only its own part, so a push to
        several shards would otherwise be applied by the others. (A sum that overflows depends on the values
        a shard holds: only the shard can refuse it, and then for its own part.)"""
        for parts in per_shard.values():
            for item, data in parts:
                values = data[-1]  # a DENSE item's only frame, or a ROWS item's second
                name = self.address.params[item.param].name
                if values.dtype == P.DTYPES[P.HALF_CODE] and abs(scale) * HALF_LARGEST <= self.largest[name]:
                    continue  # float16 values were found finite as they were rounded (fits), and are small
                largest = kernels.max_abs(values.reshape(-1))
                if not math.isfinite(largest) or largest * abs(scale) > self.largest[name]:
                    raise ValueError(f"values for '{name}' hold NaN or infinity, or values that scale "
                                     f"{scale:g} takes beyond the range of {self.dtypes[name]}: the shards "
                                     f"would refuse them (check_finite)")

    def fits(self, spec, values) -> np.ndarray:
        """``values`` if they are not float16 values that overflowed, else a ValueError (nothing is sent)."""
        if values.dtype == self.dtypes[spec.name] or math.isfinite(kernels.max_abs(values.reshape(-1))):
            return values
        raise ValueError(f"values for '{spec.name}' do not fit float16 (beyond +-{np.finfo(np.float16).max:g}, "
                         f"or not finite): push them with wire_dtype=None")

    # -- the wire ------------------------------------------------------------------------------------------
    def request(self, op: int, per_shard: dict, scale: float = 1.0) -> int:
        """Send one request to each shard in ``per_shard`` (all of them before waiting on any); its seq."""
        self.check_open()
        self.seq += 1
        limit = self.address.max_message_bytes
        messages = []
        for shard, parts in per_shard.items():
            frames = [P.encode_request(op, self.address.server_id, self.client_id, self.seq,
                                       [item for item, _ in parts], scale)]
            frames += [frame for _, data in parts for frame in data]
            sizes = [memoryview(frame).nbytes for frame in frames]
            if max(sizes) > limit:  # checked for every shard before any is sent its part
                raise ValueError(f"a frame of {max(sizes)} bytes exceeds the server's limit of {limit} bytes: "
                                 f"push fewer rows at a time")
            messages.append((shard, frames, sum(sizes)))
        for shard, frames, size in messages:
            pending = self.pending[shard]
            while len(pending) >= self.window:
                self.read_replies(shard, pending[0][0])
            self.bytes_sent += size
            try:
                send_frames(self.sockets[shard], frames)
            except zmq.Again:
                raise ShardTimeout(shard, self.address.endpoints[shard], self.timeout, "accept a send") from None
            pending.append((self.seq, op))
        return self.seq

    def check_open(self) -> None:
        if self.context is None:
            raise RuntimeError("this Client is closed: make a new Client(address) to talk to the server again")

    def last_push(self, shard: int) -> int:
        """The seq of the last push to ``shard`` still unanswered, or 0 (seqs start at 1, so reading replies
        up to 0 reads none)."""
        return next((seq for seq, op in reversed(self.pending[shard]) if op == P.OP_PUSH), 0)

    def await_reply(self, shard: int, seq: int) -> list:
        """The data frames of the reply to request ``seq`` from ``shard``, once they are in; a rejected pull or
        stats raises here."""
        self.read_replies(shard, seq)
        answer = self.unclaimed.pop((shard, seq), [])
        if isinstance(answer, tuple):  # (shard, error name, message)
            self.raise_failures(answer)
        return answer

    def read_replies(self, shard: int, seq: int) -> None:
        """Read replies from ``shard``, in order, up to the one to request ``seq``. Rejected pushes are kept for
        ``raise_failures``; the answers to pulls and stats (data frames or error) for ``await_reply``."""
        socket, pending = self.sockets[shard], self.pending[shard]
        while pending and pending[0][0] <= seq:
            try:
                frames = recv_frames(socket)  # waits up to the socket's rcvtimeo for the first frame
            except zmq.Again:
                raise ShardTimeout(shard, self.address.endpoints[shard], self.timeout, "reply") from None
            for frame in frames:
                self.bytes_received += len(frame)
            reply = P.decode_reply(frames[0].buffer)
            if reply.seq != pending[0][0]:
                raise P.ProtocolError(P.ERR_MALFORMED, f"shard {shard} answered request {reply.seq}, "
                                                       f"expected {pending[0][0]}")
            pending.popleft()
            error = None
            if reply.status == P.STATUS_ERROR:
                message = bytes(frames[1].buffer).decode(errors="replace") if len(frames) > 1 else ""
                error = (shard, P.ERRORS.get(reply.error, str(reply.error)), message)
            if reply.op == P.OP_PUSH:
                if error:
                    self.failures.append(error)
            elif (shard, reply.seq) in self.abandoned:
                self.abandoned.remove((shard, reply.seq))
            else:
                self.unclaimed[shard, reply.seq] = error or frames[1:]

    @exclusive
    def collect(self, pending: "PendingPull") -> dict:
        """What ``pending.result()`` returns: the pull's answers, once they are in."""
        return pending.collect()

    def abandon(self, shard: int, seq: int) -> None:
        """Let go of the answer to request ``seq`` from ``shard``: now if it is in, else as it arrives."""
        if self.unclaimed.pop((shard, seq), None) is None and any(s == seq for s, _ in self.pending[shard]):
            self.abandoned.add((shard, seq))

    def raise_failures(self, first=None) -> None:
        failures = ([first] if first else []) + self.failures
        self.failures = []
        if failures:
            shard, code, message = failures[0]
            raise RequestError(shard, self.address.endpoints[shard], code, message, others=failures[1:])


class PendingPull:
    """A pull on its way (``Client.pull_async``); ``result()`` waits for it, once, and returns the arrays."""

    def __init__(self, client: Client, seq: int, shapes: dict, targets: dict, earlier: dict):
        self.client, self.seq, self.shapes, self.targets, self.earlier = client, seq, shapes, targets, earlier
        self.out = self.error = None

    def result(self) -> dict:
        return self.client.collect(self)

    def collect(self) -> dict:
        """``result``'s work, under the client's ``exclusive``."""
        if self.error is not None:  # asked again after it failed: the same error, never a part of an answer
            raise self.error
        if self.out is None:
            client = self.client
            parts = collections.defaultdict(list)  # name -> [(selector, frame)]
            try:
                for shard, places in self.targets.items():
                    for (name, selector), frame in zip(places, client.await_reply(shard, self.seq)):
                        parts[name].append((selector, frame))
                for shard, seq in self.earlier.items():
                    client.read_replies(shard, seq)
                client.raise_failures()
            except Exception as error:
                self.error = error
                for shard in self.targets:  # the other shards' answers, read or still to come, are not wanted
                    client.abandon(shard, self.seq)
                raise
            self.out = {name: assemble(client.dtypes[name], client.wire[name], shape, parts[name])
                        for name, shape in self.shapes.items()}
        return self.out


def assemble(dtype, wire, shape, parts) -> np.ndarray:
    """One array of ``dtype`` and ``shape`` from the frames of its parts, ``[(rows selector, frame)]``, whose
    values are ``wire`` (float16 from the half-precision wire is widened as it is copied).

    A reply frame is a private, writable buffer the shard copied for this client, so an array answered by
    one frame in its own dtype is that frame, with no copy; one answered by several shards is copied together.
    """
    if wire == dtype and len(parts) == 1 and len(parts[0][1]) == math.prod(shape) * dtype.itemsize:
        return np.frombuffer(parts[0][1], dtype).reshape(shape)
    out = np.empty(shape, dtype)
    flat = out.reshape(shape[0], math.prod(shape[1:]))  # -1 cannot be worked out for no rows
    for selector, frame in parts:
        values = np.frombuffer(frame, wire)
        if wire == dtype:
            flat[selector] = values.reshape(-1, flat.shape[1])
        elif isinstance(selector, slice):  # a contiguous run of the result's rows
            kernels.widen(values, flat[selector].reshape(-1))
        else:
            wide = np.empty(len(values), dtype)
            kernels.widen(values, wide)
            flat[selector] = wide.reshape(-1, flat.shape[1])
    return out


def check_wire_dtype(wire_dtype):
    """None, or float16's dtype for ``"float16"`` (or ``np.float16``); anything else is a ValueError."""
    if wire_dtype is None:
        return None
    try:
        dtype = np.dtype(wire_dtype)
    except TypeError:
        dtype = None
    if dtype != P.DTYPES[P.HALF_CODE]:
        raise ValueError(f"wire_dtype must be None (each parameter's own dtype) or 'float16', got {wire_dtype!r}")
    return dtype


def looks_dense(part: np.ndarray) -> bool:
    """Whether every one of up to 64 rows spread over ``part`` is nonzero. Then ``part`` is sent dense without
    scanning it all: unless nearly every row is nonzero, a sample that size almost surely holds a zero row
    (at 95 % nonzero rows, 96 % of the time), and a delta that dense would save little as sparse rows."""
    sample = np.ascontiguousarray(part[::max(1, len(part) // DENSE_SAMPLE)])
    return len(sample) > 0 and len(kernels.nonzero_rows(sample)) == len(sample)

