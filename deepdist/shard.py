"""One shard: a process with a ZeroMQ ROUTER socket that owns a row range of every parameter.

Started by ``deepdist.server`` as ``python -m deepdist.shard``; it reads its configuration as one JSON line on
standard input, binds, answers ``READY <endpoint>`` and serves until standard input reaches end of file (the
server closes it, or the server died). Later JSON lines on standard input are commands from the server (open
and close a job's session, see ``Shard.command``), each answered with ``OK`` or ``ERROR <why>``. Answers go to the
standard output the shard was started with; anything else printed goes to standard error. A shard validates
a whole request before it writes anything, then applies pushes in place on the shared-memory arrays with
the kernels of ``deepdist.kernels``, reading straight from the received frames. Each row has one owner and
a shard handles one request at a time, so no locks.
"""
from __future__ import annotations

import base64
import collections
import ctypes
import json
import logging
import math
import os
import pickle
import sys
import time
import types
import weakref
from dataclasses import dataclass, field

import numpy as np
import zmq

from . import kernels, protocol as P, shm
from .frames import next_is_message, recv_frames, send_frames
from .sharding import is_ipv6, tcp_endpoint

log = logging.getLogger("deepdist.shard")

POLL_MS = 1000  # how long the loop sleeps in poll before it looks at its control pipe again
# A peer that keeps sending bad requests must not flood the driver's log: each window logs this many of
# them, and a line counting the rest (by error) when it ends. The error counters count them all.
ERRORS_LOGGED_PER_WINDOW = 10
ERROR_LOG_WINDOW = 60.0  # seconds
# PULL answers this large are followed until ZeroMQ has written them to the connection: what a peer has not
# taken counts against protocol.unread_answer_limit. Smaller ones are bounded by ZeroMQ's send high-water
# mark (1000 messages per peer).
TRACKED_ANSWER_BYTES = 256 << 10
# Bytes CURVE adds to a frame on the wire (a MESSAGE command's name, nonce, flags and MAC: 33 in libzmq 4.3),
# with room to spare.
CURVE_ENVELOPE = 256

# glibc malloc settings for a shard (mallopt's parameter numbers, from glibc's malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 32 << 20   # glibc's ceiling for this setting on 64-bit
TRIM_THRESHOLD = 256 << 20


@dataclass
class Owned:
    """A parameter as this shard sees it: the whole array as (rows, row_size) and the rows it owns."""
    name: str
    array: np.ndarray
    row_shape: tuple
    dtype_code: int
    lo: int
    hi: int
    # At least the largest |value| in the owned rows, while the shard checks values (see Shard.check_growth).
    bound: float = 0.0
    largest: float = field(init=False)  # the dtype's largest finite value
    # Pushes are added without a closer look while ``bound`` plus what they can add stays below this: half
    # the dtype's largest finite value, a margin that no rounding of the sums can cross.
    bound_limit: float = field(init=False)

    def __post_init__(self):
        self.largest = float(np.finfo(self.array.dtype).max)
        self.bound_limit = self.largest / 2

    def rows_view(self, selection) -> np.ndarray:
        """The selected rows in the parameter's own shape (a view for a slice, a copy for an index array)."""
        part = self.array[selection]
        return part.reshape((len(part),) + self.row_shape)

    def measure_bound(self) -> float:
        """The largest |value| in the owned rows, measured (one read of them); NaN or inf if any is not finite."""
        self.bound = kernels.max_abs(self.array[self.lo:self.hi].reshape(-1))
        return self.bound


class ShardRows(types.SimpleNamespace):
    """What a custom descent gets as ``model``: the rows a push touches, as ``model.NAME`` or, as in a dict
    model, ``model[NAME]`` (which also reaches a name that is not an identifier, such as 'layer.0')."""

    def __getitem__(self, name):
        try:
            return getattr(self, name)
        except AttributeError:
            raise KeyError(name) from None

    def __setitem__(self, name, value):
        setattr(self, name, value)


class Shard:
    def __init__(self, config: dict):
        self.index = config["shard"]
        self.server_id = config["server_id"]
        self.check_finite = config.get("check_finite", True)
        self.max_message_bytes = config["max_message_bytes"]  # for frames in, and for a pull's answer
        self.segments, self.params = [], []
        self.all_params = config["params"]
        for p in config["params"]:
            if p["lo"] is None:  # this shard owns none of its rows
                self.params.append(None)
                continue
            segment = shm.attach(p["segment"], p["dtype"], p["shape"])
            self.segments.append(segment)
            array = segment.array.reshape(p["shape"][0], -1)
            self.params.append(Owned(p["name"], array, tuple(p["shape"][1:]), P.DTYPE_CODES[array.dtype],
                                     p["lo"], p["hi"]))
        self.measure_bounds()
        owned = sum((p.hi - p.lo) * p.array[0].nbytes for p in self.params if p is not None)
        self.max_answer_bytes = P.pull_answer_limit(self.max_message_bytes, owned)
        self.max_unread_bytes = P.unread_answer_limit(self.max_answer_bytes)
        self.unread = {}  # peer identity -> deque of (weak reference, bytes) of large answers ZeroMQ holds
        # The ids requests may carry, each with how its pushes are applied: a custom descent(model, update),
        # or None to add them. The server's own id is always open; each DeepDist job opens one of its own,
        # with its descent, and closes it when the job ends, after which its requests are refused.
        self.sessions = {self.server_id: None}
        self.last_seq = {}  # client_id -> highest push seq applied: how a retried push is recognised
        self.counters = collections.Counter()
        self.errors_by_code = collections.Counter()
        self.log_window_start, self.logged, self.unlogged = time.monotonic(), 0, collections.Counter()

    # -- requests ------------------------------------------------------------------------------------------
    def handle(self, frames: list, peer: bytes = None) -> list:
        """Reply frames for one request (the frames after the ROUTER identity ``peer``). Never raises."""
        header = frames[0].buffer if frames else b""
        data = frames[1:]
        self.counters["bytes_in"] += sum(len(f) for f in frames)
        try:
            request = P.decode_request(header, len(data))
            if request.server_id not in self.sessions:
                raise P.ProtocolError(P.ERR_SERVER, f"request for server {request.server_id:016x}, which this "
                                                    f"shard does not serve (a job that has ended, or a stale "
                                                    f"address: this server is {self.server_id:016x})")
            if request.op == P.OP_PUSH:
                reply = self.push(request, data, self.sessions[request.server_id])
            elif request.op == P.OP_PULL:
                reply = self.pull(request, data, peer)
            else:
                reply = self.stats(request)
        except P.ProtocolError as error:
            reply = self.error(header, error)
        except Exception as error:  # a bug, not bad input: say so, keep serving
            log.exception("shard %d failed on a request", self.index)
            reply = self.error(header, P.ProtocolError(P.ERR_INTERNAL, f"{type(error).__name__}: {error}"))
        self.counters["bytes_out"] += sum(len(f) if isinstance(f, bytes) else f.nbytes for f in reply)
        return reply

    def error(self, header, error: P.ProtocolError) -> list:
        op, seq = P.peek(header)
        name = P.ERRORS.get(error.code, str(error.code))
        self.counters["errors"] += 1
        self.errors_by_code[name] += 1
        self.end_log_window(time.monotonic())
        if self.logged < ERRORS_LOGGED_PER_WINDOW:
            self.logged += 1
            log.warning("shard %d rejected a request: %s", self.index, error)
        else:
            self.unlogged[name] += 1
        return [P.encode_reply(op, P.STATUS_ERROR, seq, error=error.code), str(error).encode()]

    def end_log_window(self, now: float, last: bool = False) -> None:
        """Once the error log's window is over (or the shard stops), count the errors it did not log."""
        if not last and now - self.log_window_start < ERROR_LOG_WINDOW:
            return
        if self.unlogged:
            log.warning("shard %d rejected %d more requests in the last %.0f s, not logged one by one: %s",
                        self.index, sum(self.unlogged.values()), now - self.log_window_start,
                        ", ".join(f"{count} {name}" for name, count in sorted(self.unlogged.items())))
        self.log_window_start, self.logged, self.unlogged = now, 0, collections.Counter()

    def push(self, request: P.Request, data: list, descent) -> list:
        if not math.isfinite(request.scale):
            raise P.ProtocolError(P.ERR_NONFINITE, f"scale is {request.scale}")
        # Validate every item before applying any: a rejected request writes nothing.
        updates, frames = [], iter(data)
        for item in request.items:
            param = self.param(item)
            if abs(request.scale) > param.largest:  # the kernels would round it to infinity
                raise P.ProtocolError(P.ERR_NONFINITE, f"scale {request.scale:g} is beyond the range of "
                                                       f"{param.array.dtype}, the dtype of '{param.name}'")
            if item.kind == P.KIND_DENSE:
                if item.n_rows != param.hi - param.lo:
                    raise P.ProtocolError(P.ERR_SHAPE, f"dense update of '{param.name}' has {item.n_rows} "
                                                       f"rows, this shard owns {param.hi - param.lo}")
                updates.append((param, None, *self.values(param, item, next(frames))))
            else:
                rows = self.rows(param, next(frames), item.n_rows)
                updates.append((param, rows, *self.values(param, item, next(frames))))
        if request.client_id and request.seq <= self.last_seq.get(request.client_id, 0):
            self.counters["duplicates"] += 1
            return [P.encode_reply(P.OP_PUSH, P.STATUS_DUPLICATE, request.seq)]
        if descent is None:
            if self.check_finite:
                self.check_growth(updates, request.scale)
            for param, rows, values, _ in updates:
                if rows is None:
                    kernels.axpy(param.array[param.lo:param.hi].reshape(-1), values.reshape(-1), request.scale)
                else:
                    kernels.scatter_add(param.array, rows, values, request.scale)
        else:
            self.run_descent(descent, updates, request.scale)
        if request.client_id:
            self.last_seq[request.client_id] = request.seq
        self.counters["pushes"] += 1
        return [P.encode_reply(P.OP_PUSH, P.STATUS_OK, request.seq)]

    def check_growth(self, updates: list, scale: float) -> None:
        """Refuse a push whose sums would overflow to infinity; raise the bounds of the parameters it touches.

        Every value an update adds to is finite, so a sum can only overflow if the values are near the
        dtype's largest. Each parameter keeps a bound of its |values|; an update can raise any |value| by at
        most |scale| times its largest |value| times how often a row repeats in it. While the bound plus that
        stays below ``Owned.bound_limit`` nothing more is needed, and this costs nothing but the largest
        |value|, found in the pass that checks the update is finite. Past it the bound is measured again,
        and if that is still too close, the push is added first to a copy of the rows it touches, with the
        same kernels in the same order: it is refused if any sum there is not finite.
        """
        growth = collections.defaultdict(float)  # name -> the most any |value| of it can grow by
        for param, rows, _, largest in updates:
            growth[param.name] += abs(scale) * largest * (1 if rows is None else len(rows))
        bounds = {}
        for param, _, _, _ in updates:
            name, most = param.name, growth[param.name]
            if name in bounds:
                continue
            if param.bound + most < param.bound_limit or param.measure_bound() + most < param.bound_limit:
                bounds[name] = param.bound + most
                continue
            if not math.isfinite(param.bound):
                raise P.ProtocolError(P.ERR_NONFINITE, f"'{name}' already holds NaN or infinity on shard "
                                                       f"{self.index} (written other than by a push)")
            mine = [(rows, values) for other, rows, values, _ in updates if other.name == name]
            largest = kernels.max_abs(self.sums(param, mine, scale).reshape(-1))
            if not math.isfinite(largest):
                raise P.ProtocolError(P.ERR_NONFINITE, f"adding this push to '{name}' would take values past "
                                                       f"the largest {param.array.dtype} "
                                                       f"({np.finfo(param.array.dtype).max:.3g}) to infinity "
                                                       f"(is training diverging?)")
            bounds[name] = max(param.bound, largest)
        for param, _, _, _ in updates:
            param.bound = bounds[param.name]

    @staticmethod
    def sums(param: Owned, updates: list, scale: float) -> np.ndarray:
        """The rows that ``updates``, ``[(rows or None, values)]`` of ``param`` in push order, touch, with them
        added: a copy, as the kernels would leave the parameter."""
        if any(rows is None for rows, _ in updates):  # a dense update touches every owned row
            touched, scratch = None, param.array[param.lo:param.hi].copy()
        else:
            touched = np.unique(np.concatenate([rows for rows, _ in updates]))
            scratch = param.array[touched]
        for rows, values in updates:
            if rows is None:
                kernels.axpy(scratch.reshape(-1), values.reshape(-1), scale)
            else:
                where = rows - param.lo if touched is None else np.searchsorted(touched, rows)
                kernels.scatter_add(scratch, where.astype(P.ROW_DTYPE), values, scale)
        return scratch

    def run_descent(self, descent, updates: list, scale: float) -> None:
        """Call the custom ``descent(model, update)`` on this shard's part of one push.

        ``model.NAME`` (or ``model[NAME]``) and ``update[NAME]`` are the rows this push touches, in the
        parameter's shape; repeated rows arrive summed; parameters the push does not touch here are empty.
        descent works on copies that are written back only when it returns, so a descent that raises leaves
        nothing half-written.
        """
        model, update, selections = ShardRows(), {}, {}
        for p in self.all_params:
            empty = np.empty([0] + p["shape"][1:], p["dtype"])
            setattr(model, p["name"], empty)
            update[p["name"]] = empty
        for param, rows, values, _ in updates:
            if param.name in selections:
                raise P.ProtocolError(P.ERR_MALFORMED, f"'{param.name}' appears twice in one push; a custom "
                                                       f"descent takes one update per parameter")
            if rows is None:  # (float16 values from the half-precision wire become the parameter's dtype)
                selection, summed = slice(param.lo, param.hi), values.astype(param.array.dtype, copy=False) * scale
            else:
                selection, inverse = np.unique(rows, return_inverse=True)
                summed = np.zeros((len(selection), values.shape[1]), param.array.dtype)
                kernels.scatter_add(summed, inverse.astype(P.ROW_DTYPE), values, scale)
            rows_now = param.rows_view(selection)
            setattr(model, param.name, rows_now.copy())
            update[param.name] = summed.reshape(rows_now.shape)
            selections[param.name] = (param, selection, rows_now.shape)
        try:
            descent(model, update)
        except BaseException as error:  # SystemExit and KeyboardInterrupt too: the user's code, not the shard's
            raise P.ProtocolError(P.ERR_DESCENT, f"descent raised {type(error).__name__}: {error}") from None
        # Every result checked and converted before the first is written: a push is applied whole or not at all.
        results = []
        for name, (param, selection, shape) in selections.items():
            result = getattr(model, name, None)
            if result is None:
                raise P.ProtocolError(P.ERR_DESCENT, f"descent removed model.{name}")
            if np.shape(result) != shape:
                raise P.ProtocolError(P.ERR_DESCENT, f"descent changed model.{name} to shape "
                                                     f"{np.shape(result)}, expected {shape}")
            try:
                result = np.asarray(result).astype(param.array.dtype, casting="same_kind")
            except (TypeError, ValueError) as error:
                raise P.ProtocolError(P.ERR_DESCENT, f"descent set model.{name} to values that are not "
                                                     f"{param.array.dtype}: {error}") from None
            largest = kernels.max_abs(result.reshape(-1)) if self.check_finite else 0.0
            if not math.isfinite(largest):
                raise P.ProtocolError(P.ERR_NONFINITE, f"descent set model.{name} to NaN or infinity")
            results.append((param, selection, result, largest))
        for param, selection, result, largest in results:
            param.array[selection] = result.reshape(-1, param.array.shape[1])
            param.bound = max(param.bound, largest)

    def pull(self, request: P.Request, data: list, peer: bytes = None) -> list:
        frames, wanted = iter(data), []
        for item in request.items:
            param = self.param(item)
            if item.kind == P.KIND_DENSE and item.n_rows != param.hi - param.lo:
                raise P.ProtocolError(P.ERR_SHAPE, f"dense pull of '{param.name}' asks for {item.n_rows} rows, "
                                                   f"this shard owns {param.hi - param.lo}")
            rows = None if item.kind == P.KIND_DENSE else self.rows(param, next(frames), item.n_rows)
            wanted.append((param, rows, P.DTYPES[item.dtype]))
        # A small request may ask for the same rows, or the same parameter, many times over: refuse it before
        # allocating the answer (8 bytes of index could otherwise cost a row of answer each).
        size = sum((param.hi - param.lo if rows is None else len(rows)) * param.array.shape[1] * dtype.itemsize
                   for param, rows, dtype in wanted)
        if size > self.max_answer_bytes:
            raise P.ProtocolError(P.ERR_SHAPE, f"the pull would answer {size} bytes, more than the limit of "
                                               f"{self.max_answer_bytes} bytes (pull_answer_limit)")
        if peer is not None and size >= TRACKED_ANSWER_BYTES:
            held = self.unread_bytes(peer)
            if held + size > self.max_unread_bytes:
                raise P.ProtocolError(P.ERR_BACKLOG, f"{held} bytes of answers sent to this client are not read "
                                                     f"yet; {size} more would pass the limit of "
                                                     f"{self.max_unread_bytes} (unread_answer_limit): read "
                                                     f"answers before asking for more")
        out = []
        for param, rows, dtype in wanted:
            # Copies, not views of shared memory: zmq sends from its I/O thread after send() returns, and
            # pushes applied meanwhile would tear the rows on the wire.
            if rows is None:
                owned = param.array[param.lo:param.hi]
                if dtype == param.array.dtype:
                    values = owned.copy()
                else:
                    values = np.empty(owned.shape, dtype)
                    kernels.narrow(owned.reshape(-1), values.reshape(-1))
            else:
                values = np.empty((len(rows), param.array.shape[1]), dtype)
                kernels.gather(param.array, rows, values)
            if dtype != param.array.dtype and not math.isfinite(kernels.max_abs(values.reshape(-1))):
                raise P.ProtocolError(P.ERR_DTYPE, f"'{param.name}' holds values that float16 cannot carry "
                                                   f"(beyond +-{np.finfo(np.float16).max:g}, or not finite): "
                                                   f"pull it as {param.array.dtype}")
            out.append(values)
        self.counters["pulls"] += 1
        return [P.encode_reply(P.OP_PULL, P.STATUS_OK, request.seq, n_items=len(out))] + out

    def stats(self, request: P.Request) -> list:
        report = dict(self.counters, shard=self.index, clients=len(self.last_seq),
                      errors_by_code=dict(self.errors_by_code))
        for key in ("pushes", "pulls", "errors", "duplicates", "bytes_in", "bytes_out"):
            report.setdefault(key, 0)
        return [P.encode_reply(P.OP_STATS, P.STATUS_OK, request.seq, n_items=1), json.dumps(report).encode()]

    # -- validation ----------------------------------------------------------------------------------------
    def param(self, item: P.Item) -> Owned:
        if item.param >= len(self.params):
            raise P.ProtocolError(P.ERR_PARAM, f"unknown parameter index {item.param}; this server has "
                                               f"{len(self.params)} parameters")
        param = self.params[item.param]
        if param is None:
            raise P.ProtocolError(P.ERR_PARAM, f"parameter index {item.param} has no rows on shard {self.index}")
        if item.dtype != param.dtype_code and not (item.dtype == P.HALF_CODE and param.array.dtype == P.HALF_FOR):
            said = P.DTYPES.get(item.dtype, f"dtype code {item.dtype}")
            why = " (float16 travels only for float32 parameters)" if item.dtype == P.HALF_CODE else ""
            raise P.ProtocolError(P.ERR_DTYPE, f"'{param.name}' is {param.array.dtype}, the request says "
                                               f"{said}{why}")
        return param

    def rows(self, param: Owned, frame, n_rows: int) -> np.ndarray:
        if len(frame) != n_rows * P.ROW_DTYPE.itemsize:
            raise P.ProtocolError(P.ERR_MALFORMED, f"row index frame of '{param.name}' is {len(frame)} bytes, "
                                                   f"{n_rows} int64 rows need {n_rows * P.ROW_DTYPE.itemsize}")
        rows = np.frombuffer(frame.buffer, P.ROW_DTYPE)
        bad = kernels.first_row_outside(rows, param.lo, param.hi)
        if bad >= 0:
            raise P.ProtocolError(P.ERR_ROWS, f"row {rows[bad]} of '{param.name}' is outside the rows "
                                              f"[{param.lo}, {param.hi}) that shard {self.index} owns")
        return rows

    def values(self, param: Owned, item: P.Item, frame) -> tuple:
        """The update's values as rows (in the item's dtype: float16 from the half-precision wire), and their
        largest |value| (0.0 if not checking)."""
        row_size, dtype, n_rows = param.array.shape[1], P.DTYPES[item.dtype], item.n_rows
        expected = n_rows * row_size * dtype.itemsize
        if len(frame) != expected:
            raise P.ProtocolError(P.ERR_SHAPE, f"values frame of '{param.name}' is {len(frame)} bytes, "
                                               f"{n_rows} rows of {row_size} {dtype} need {expected}")
        values = np.frombuffer(frame.buffer, dtype).reshape(n_rows, row_size)
        largest = kernels.max_abs(values.reshape(-1)) if self.check_finite else 0.0
        if not math.isfinite(largest):
            raise P.ProtocolError(P.ERR_NONFINITE, f"values for '{param.name}' contain NaN or infinity")
        return values, largest

    # -- the loop ------------------------------------------------------------------------------------------
    def serve(self, socket: zmq.Socket, control: "ControlPipe") -> None:
        poller = zmq.Poller()
        poller.register(socket, zmq.POLLIN)
        poller.register(control.fd, zmq.POLLIN)
        while True:
            events = dict(poller.poll(POLL_MS))
            self.end_log_window(time.monotonic())
            if control.fd in events:
                lines = control.read_lines()
                if lines is None:
                    return  # end of file: the server asked us to stop, or it is gone
                for line in lines:
                    command = json.loads(line)
                    control.answer(f"{command.get('id', 0)} {self.command(command)}")
            # Drain what is queued before polling again, but go back to the pipe as soon as a command waits:
            # clients can keep the queue full for as long as a job runs, and closing a job must not wait
            # behind them (close_session promises that nothing sent to it is applied once it returns).
            # Asking whether a message is queued costs less than a non-blocking recv that ends in zmq.Again,
            # an exception each time the queue runs dry.
            while next_is_message(socket, control.fd):
                frames = recv_frames(socket)
                peer = frames[0].bytes
                reply = [frames[0]] + self.handle(frames[1:], peer)
                size = sum(frame.nbytes for frame in reply[2:] if isinstance(frame, np.ndarray))  # answers
                if size < TRACKED_ANSWER_BYTES:
                    send_frames(socket, reply)
                else:
                    # An answer is a new array, and pyzmq keeps a buffer it sends without copying referenced
                    # until libzmq lets go of the message: the last array lives until the peer has taken
                    # the whole answer (or is gone). A weak reference costs nothing at send, where a
                    # zmq.MessageTracker cost 12 us of this thread a message, measured.
                    self.unread.setdefault(peer, collections.deque()).append((weakref.ref(reply[-1]), size))
                    send_frames(socket, reply, without_copy=True)
                del reply  # or it would hold the last answer until the next request
            for peer in list(self.unread):  # forget peers whose answers are all taken (or gone with them)
                self.unread_bytes(peer)

    def unread_bytes(self, peer: bytes) -> int:
        """Bytes of large answers sent to ``peer`` that ZeroMQ still holds (queued, or being written)."""
        sent = self.unread.get(peer)
        while sent and sent[0][0]() is None:  # one connection writes its messages in order
            sent.popleft()
        if not sent:
            self.unread.pop(peer, None)
            return 0
        return sum(size for _, size in sent)

    def command(self, command: dict) -> str:
        """Carry out a command from the server's pipe; the answer line for it.

        ``{"open": id, "descent": blob or None, "path": [...]}`` opens a session: requests carrying ``id`` are
        served, their pushes applied with the descent. ``{"close": id}`` closes it: from the next request on,
        its requests are refused (a job that has ended writes nothing more, whatever its tasks still send).
        """
        if "open" in command:
            try:
                # These bytes come from the server process that started us, over our private stdin pipe,
                # never from the network: the server pickled the user's own descent function. A function the
                # driver imports from its own modules is pickled by reference: look where the driver looks.
                sys.path.extend(folder for folder in command.get("path", ()) if folder not in sys.path)
                blob = command["descent"]
                descent = None if blob is None else pickle.loads(base64.b64decode(blob))
            except Exception as error:
                return f"ERROR cannot load descent: {type(error).__name__}: {error}"
            self.sessions[command["open"]] = descent
            # A job starts from the values the driver holds now, which it may have written itself.
            self.measure_bounds()
            return "OK"
        if "close" in command:
            if command["close"] != self.server_id:
                self.sessions.pop(command["close"], None)
            return "OK"
        return f"ERROR unknown command {sorted(command)}"

    def measure_bounds(self) -> None:
        if self.check_finite:
            for param in self.params:
                if param is not None:
                    param.measure_bound()

    def close(self) -> None:
        self.end_log_window(time.monotonic(), last=True)
        self.params = []
        for segment in self.segments:
            segment.close()


class ControlPipe:
    """The shard's two pipes to the server: lines from it on ``fd``, read without blocking once the first line
    is in, and answers to it on ``answers`` (a text file)."""

    def __init__(self, fd: int, answers):
        self.fd, self.buffer, self.answers = fd, b"", answers

    def answer(self, line: str) -> None:
        print(line, file=self.answers, flush=True)

    def read_lines(self):
        """Complete lines available now; None at end of file."""
        chunk = os.read(self.fd, 1 << 16)
        if not chunk:
            return None
        self.buffer += chunk
        *lines, self.buffer = self.buffer.split(b"\n")
        return lines

    def first_line(self) -> bytes:
        lines = []
        while not lines:
            lines = self.read_lines()
            if lines is None:
                raise SystemExit("deepdist shard: standard input closed before the configuration arrived")
        if len(lines) > 1:
            raise SystemExit("deepdist shard: a command arrived before the shard was ready")
        return lines[0]


def keep_freed_memory() -> bool:
    """Have glibc reuse freed message buffers instead of returning them to the kernel; True if it took.

    libzmq receives every message into a fresh malloc'd buffer, and a push is freed once applied. glibc's
    defaults serve large buffers with mmap, or trim the heap once a burst of queued pushes is freed, so
    the next buffers come back as fresh pages: the kernel zeroes them and faults them in one by one while
    the I/O thread copies the message in: about 30% of a shard's CPU under 1 MB pushes. Buffers up to
    32 MB now come from the heap, and the heap keeps up to 256 MB of freed memory for the next ones.
    No-op where the C library has no mallopt (macOS, musl).
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def main() -> None:
    keep_freed_memory()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    # Standard output is the pipe the server reads answers from. Answers go to a duplicate of it, and the
    # descriptor itself now points at standard error: whatever else writes to it (a user's descent that
    # prints) reaches the log instead of being read as an answer.
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    control = ControlPipe(sys.stdin.fileno(), answers)
    config = json.loads(control.first_line())
    shard = Shard(config)
    context = zmq.Context()
    authenticator = None if config.get("curve") is None else curve_authenticator(context, config["curve"][2])
    socket = context.socket(zmq.ROUTER)
    socket.linger = 0
    socket.sndhwm = socket.rcvhwm = P.HIGH_WATER_MARK
    if authenticator is not None:  # before bind: every connection then starts with the CURVE handshake
        socket.curve_server = True
        socket.curve_publickey, socket.curve_secretkey = (key.encode() for key in config["curve"][:2])
    # ZeroMQ checks the size of a frame as it arrives: encrypted, that is the frame plus CURVE's envelope.
    socket.setsockopt(zmq.MAXMSGSIZE, config["max_message_bytes"] + (CURVE_ENVELOPE if authenticator else 0))
    bind = tcp_endpoint(config["host"], config.get("port") or "*")
    socket.ipv6 = is_ipv6(bind)
    try:
        socket.bind(bind)
    except zmq.ZMQError as error:  # a port in use, an address not on this host: the server says which
        control.answer(f"ERROR cannot listen on {bind}: {zmq.strerror(error.errno)}")
        raise SystemExit(1) from None
    endpoint = socket.getsockopt_string(zmq.LAST_ENDPOINT)
    control.answer(f"READY {endpoint}")
    try:
        shard.serve(socket, control)
    finally:
        socket.close()
        if authenticator is not None:
            authenticator.stop()
        context.term()
        shard.close()


class OneClientKey:
    """ZAP's CURVE check (pyzmq's credentials provider): a client is served if it holds ``key``'s pair."""

    def __init__(self, key: str):
        self.key = key.encode()

    def callback(self, domain: str, client_key: bytes) -> bool:
        return client_key == self.key


def curve_authenticator(context: zmq.Context, client_key: str):
    """pyzmq's ZAP handler, in a thread of this shard, admitting only ``client_key`` (Z85)."""
    from zmq.auth.thread import ThreadAuthenticator

    authenticator = ThreadAuthenticator(context)
    authenticator.start()
    authenticator.configure_curve_callback("*", credentials_provider=OneClientKey(client_key))
    return authenticator


if __name__ == "__main__":
    main()
