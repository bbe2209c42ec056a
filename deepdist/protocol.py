"""The deepdist wire protocol, version 1: every constant, the frame layouts, encode and decode.

This module is the single home of everything that crosses the network; ``docs/protocol.md`` is its prose
specification. It imports nothing from deepdist, so both the shard and the client depend on it and never on
each other. Nothing here pickles or evaluates: headers are fixed-size little-endian structs, arrays travel
as raw buffers whose dtype and length the header states, and the only text is UTF-8 error messages and the
JSON of a STATS reply.
"""
from __future__ import annotations

import struct
from typing import NamedTuple

import numpy as np

from .errors import DeepDistError

MAGIC = b"DD"
VERSION = 1

# Operations (request header byte 3; echoed in the reply).
OP_PUSH = 1   # apply updates to owned rows; reply: status only
OP_PULL = 2   # read owned rows; reply: one values frame per item
OP_STATS = 3  # reply: one JSON frame of counters
OPS = {OP_PUSH: "PUSH", OP_PULL: "PULL", OP_STATS: "STATS"}

# Item kinds. A DENSE item covers exactly the rows the shard owns (one values frame for a push, no frame for
# a pull); a ROWS item names global row indices in an int64 frame (followed by a values frame for a push).
KIND_DENSE = 1
KIND_ROWS = 2
KINDS = {KIND_DENSE: "DENSE", KIND_ROWS: "ROWS"}

# dtype codes: parameters are float32 or float64; row indices are always little-endian int64. float16 is
# the half-precision wire: the values of a float32 parameter may travel as float16 (a push's values, or what
# a pull asks its answer in), half the bytes, rounded to float16; the shard keeps float32.
DTYPE_CODES = {np.dtype("<f4"): 1, np.dtype("<f8"): 2, np.dtype("<f2"): 3}
DTYPES = {code: dtype for dtype, code in DTYPE_CODES.items()}
HALF_CODE, HALF_FOR = DTYPE_CODES[np.dtype("<f2")], np.dtype("<f4")  # float16 travels for float32 parameters
ROW_DTYPE = np.dtype("<i8")

# Reply status.
STATUS_OK = 0
STATUS_ERROR = 1
STATUS_DUPLICATE = 2  # a push whose (client_id, seq) this shard already applied: acknowledged, not re-applied

# Error codes carried by an ERROR reply, with the message frame saying the particulars.
ERR_MALFORMED = 1      # wrong magic, header length or frame count, or a frame of the wrong size
ERR_VERSION = 2        # protocol version this shard does not speak
ERR_OP = 3             # unknown operation or item kind
ERR_SERVER = 4         # the request names another server (stale address, port reused)
ERR_PARAM = 5          # unknown parameter index, or the parameter has no rows on this shard
ERR_DTYPE = 6          # dtype code differs from the parameter's (and is not float16 for float32), or a
                       # float16 answer cannot carry the values (beyond +-65504)
ERR_SHAPE = 7          # row count or values size does not match
ERR_ROWS = 8           # a row index outside the rows this shard owns
ERR_NONFINITE = 9      # NaN or infinity in values or scale, or sums that would overflow to infinity
ERR_INTERNAL = 10      # the shard failed applying a valid request (a bug): nothing is half-written
ERR_DESCENT = 11       # the server's custom descent raised or changed a shape: nothing was written
ERR_BACKLOG = 12       # a PULL from a peer that has not yet taken the answers it was sent (unread_answer_limit)
ERRORS = {ERR_MALFORMED: "MALFORMED", ERR_VERSION: "VERSION", ERR_OP: "OP", ERR_SERVER: "SERVER",
          ERR_PARAM: "PARAM", ERR_DTYPE: "DTYPE", ERR_SHAPE: "SHAPE", ERR_ROWS: "ROWS",
          ERR_NONFINITE: "NONFINITE", ERR_INTERNAL: "INTERNAL", ERR_DESCENT: "DESCENT",
          ERR_BACKLOG: "BACKLOG"}

# Request header: magic, version, op, n_items, flags (0), server_id, client_id, seq, scale.
REQUEST = struct.Struct("<2sBBHHQQQd")
# Item descriptor, n_items of them after the request header in frame 0: param index, kind, dtype code,
# 4 reserved bytes (zero), n_rows (rows of a DENSE item or length of a ROWS item's index frame).
ITEM = struct.Struct("<HBBIQ")
# Reply header: magic, version, op, status, n_items, error code, seq.
REPLY = struct.Struct("<2sBBBxHIxxxxQ")

MAX_ITEMS = 1024  # items in one request; bounds the header a shard will parse
# Messages a connection queues each way before ZeroMQ holds back (a client) or drops (a shard's ROUTER, to a
# peer that does not read) more: set on both ends. A client keeps fewer requests than this in flight
# (client.MAX_WINDOW), so no reply of its is ever dropped.
HIGH_WATER_MARK = 1000


class ProtocolError(DeepDistError):
    """A request or reply that breaks the protocol; ``code`` is one of the ERR_* constants."""

    def __init__(self, code: int, message: str):
        super().__init__(f"{ERRORS.get(code, code)}: {message}")
        self.code = code
        self.message = message


# Named tuples rather than dataclasses: a shard and a client build several per request, and a frozen
# dataclass costs several times as much to create.
class Request(NamedTuple):
    op: int
    server_id: int
    client_id: int
    seq: int
    scale: float
    items: tuple  # of Item

    def __str__(self):  # what logs show of a request (ps-lite's DebugString)
        items = ", ".join(str(item) for item in self.items)
        return (f"{OPS.get(self.op, self.op)} client={self.client_id:016x} seq={self.seq} "
                f"scale={self.scale:g} [{items}]")


class Item(NamedTuple):
    param: int
    kind: int
    dtype: int
    n_rows: int

    def __str__(self):
        return f"param {self.param} {KINDS.get(self.kind, self.kind)} {self.n_rows} rows"


class Reply(NamedTuple):
    op: int
    status: int
    n_items: int
    error: int
    seq: int


def pull_answer_limit(max_message_bytes: int, owned_bytes: int) -> int:
    """The most bytes a shard answers one PULL with: what a message may hold, or everything the shard owns
    if that is more (a whole pull of every parameter is always served). Repeated rows or items cannot make
    a small request cost more than that."""
    return max(max_message_bytes, owned_bytes)


def unread_answer_limit(answer_limit: int) -> int:
    """The most bytes of PULL answers a shard holds for one peer that has not taken them off the connection
    yet: two of the largest answers, so that a client pulling the next chunk while it reads this one is
    always served, and a peer that asks without reading cannot make the shard hold its answers without
    bound."""
    return 2 * answer_limit


def frames_per_item(op: int, kind: int) -> int:
    """How many data frames follow the header for one item of this operation and kind."""
    if op == OP_PUSH:
        return 1 if kind == KIND_DENSE else 2
    return 0 if kind == KIND_DENSE else 1


def encode_request(op: int, server_id: int, client_id: int, seq: int, items, scale: float = 1.0) -> bytes:
    parts = [REQUEST.pack(MAGIC, VERSION, op, len(items), 0, server_id, client_id, seq, scale)]
    parts.extend(ITEM.pack(item.param, item.kind, item.dtype, 0, item.n_rows) for item in items)
    return b"".join(parts)


def peek(header) -> tuple:
    """``(op, seq)`` of a request header, or ``(0, 0)`` where it is too short to say: what an error reply echoes."""
    if len(header) < REQUEST.size:
        return 0, 0
    fields = REQUEST.unpack_from(header)
    return fields[2], fields[7]


def decode_request(header, n_frames: int) -> Request:
    """Parse frame 0 of a request and check it against the number of data frames that followed it.

    Raises ProtocolError with the code a shard should reply with. Checks that need the parameter table
    (index, dtype, rows) are the shard's.
    """
    header = memoryview(header)
    if len(header) < REQUEST.size:
        raise ProtocolError(ERR_MALFORMED, f"header frame is {len(header)} bytes, shorter than the "
                                           f"{REQUEST.size}-byte request header")
    magic, version, op, n_items, flags, server_id, client_id, seq, scale = REQUEST.unpack_from(header)
    if magic != MAGIC:
        raise ProtocolError(ERR_MALFORMED, f"bad magic {bytes(magic)!r}, expected {MAGIC!r}")
    if version != VERSION:
        raise ProtocolError(ERR_VERSION, f"protocol version {version}, this shard speaks {VERSION}")
    if op not in OPS:
        raise ProtocolError(ERR_OP, f"unknown operation {op}")
    if flags != 0:
        raise ProtocolError(ERR_MALFORMED, f"reserved flags {flags:#x} must be 0")
    if n_items > MAX_ITEMS:
        raise ProtocolError(ERR_MALFORMED, f"{n_items} items, more than the limit {MAX_ITEMS}")
    expected = REQUEST.size + n_items * ITEM.size
    if len(header) != expected:
        raise ProtocolError(ERR_MALFORMED, f"header frame is {len(header)} bytes, {n_items} items need "
                                           f"exactly {expected}")
    if op == OP_STATS and n_items:
        raise ProtocolError(ERR_MALFORMED, f"STATS takes no items, got {n_items}")
    items = []
    for param, kind, dtype, reserved, n_rows in ITEM.iter_unpack(header[REQUEST.size:]):
        if kind not in KINDS:
            raise ProtocolError(ERR_OP, f"unknown item kind {kind}")
        if reserved:
            raise ProtocolError(ERR_MALFORMED, f"an item's reserved bytes are {reserved:#x}, must be 0")
        items.append(Item(param, kind, dtype, n_rows))
    wanted = sum(frames_per_item(op, item.kind) for item in items)
    if n_frames != wanted:
        raise ProtocolError(ERR_MALFORMED, f"{n_frames} data frames after the header, "
                                           f"{OPS[op]} of these items needs {wanted}")
    return Request(op, server_id, client_id, seq, scale, tuple(items))


def encode_reply(op: int, status: int, seq: int, n_items: int = 0, error: int = 0) -> bytes:
    return REPLY.pack(MAGIC, VERSION, op, status, n_items, error, seq)


def decode_reply(header) -> Reply:
    header = memoryview(header)
    if len(header) != REPLY.size:
        raise ProtocolError(ERR_MALFORMED, f"reply header is {len(header)} bytes, expected {REPLY.size}")
    magic, version, op, status, n_items, error, seq = REPLY.unpack(header)
    if magic != MAGIC or version != VERSION:
        raise ProtocolError(ERR_VERSION, f"reply has magic {bytes(magic)!r} version {version}")
    return Reply(op, status, n_items, error, seq)
