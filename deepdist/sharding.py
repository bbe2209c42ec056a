"""Which shard owns which rows: pure functions shared by the server (to start shards) and the client.

Every parameter is cut along its first axis into contiguous row ranges, one per shard, so that each row has
exactly one owner and a shard can apply updates without locks. A parameter too small to be worth cutting
lives whole on one shard; small parameters are dealt round-robin so that they do not all land on shard 0.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from . import kernels

# A parameter smaller than this is not cut: splitting it would only add a message per push.
WHOLE_BELOW_BYTES = 64 * 1024
WILDCARDS = ("0.0.0.0", "*", "::")  # bind addresses meaning every interface: no client can dial them


def tcp_endpoint(host: str, port) -> str:
    """The ZeroMQ endpoint of ``host`` (a name, an IPv4 address, or an IPv6 address, which ZeroMQ wants in
    brackets) and ``port`` (a number, or ``*`` for any free one)."""
    return f"tcp://[{host}]:{port}" if ":" in host else f"tcp://{host}:{port}"


def is_ipv6(endpoint: str) -> bool:
    """Whether a ``tcp_endpoint`` names an IPv6 address: its socket must have ZMQ_IPV6 set to reach it."""
    return endpoint.startswith("tcp://[")


@dataclass(frozen=True)
class ParamSpec:
    """What a client needs to know of a parameter: its name, dtype, shape and who owns which rows."""
    name: str
    dtype: str                 # numpy dtype string, '<f4' or '<f8'
    shape: tuple
    ranges: tuple              # ((shard, lo, hi), ...) sorted by lo, covering [0, shape[0])

    @property
    def n_rows(self) -> int:
        return self.shape[0]

    @property
    def row_shape(self) -> tuple:
        return self.shape[1:]

    @property
    def row_size(self) -> int:
        """Elements in one row (1 for a 1-D parameter). math.prod: np.prod of a tuple costs ~20 us, and clients
        ask for every push and pull."""
        return math.prod(self.shape[1:])

    @property
    def bounds(self) -> np.ndarray:
        """The upper row bound of every range, for np.searchsorted."""
        return np.array([hi for _, _, hi in self.ranges], dtype=np.int64)


def split_rows(n_rows: int, n_shards: int) -> list:
    """Cut [0, n_rows) into n_shards contiguous ranges whose sizes differ by at most one; empty ranges dropped."""
    base, extra = divmod(n_rows, n_shards)
    ranges, lo = [], 0
    for shard in range(n_shards):
        hi = lo + base + (shard < extra)
        if hi > lo:
            ranges.append((shard, lo, hi))
        lo = hi
    return ranges


def plan(arrays: dict, n_shards: int) -> dict:
    """Place every array of ``{name: ndarray}`` on ``n_shards`` shards; returns ``{name: ParamSpec}``."""
    specs, next_whole = {}, 0
    for name, array in arrays.items():
        if array.nbytes < WHOLE_BELOW_BYTES or array.shape[0] < n_shards:
            ranges = [(next_whole % n_shards, 0, array.shape[0])]
            next_whole += 1
        else:
            ranges = split_rows(array.shape[0], n_shards)
        specs[name] = ParamSpec(name, array.dtype.str, tuple(array.shape), tuple(ranges))
    return specs


def owned(specs: dict, shard: int) -> dict:
    """``{name: (lo, hi)}`` of the rows ``shard`` owns, for the parameters it owns any of."""
    return {name: (lo, hi) for name, spec in specs.items()
            for owner, lo, hi in spec.ranges if owner == shard}


def split_by_owner(spec: ParamSpec, rows: np.ndarray):
    """Group sparse row indices by owner: yields ``(shard, selector)`` where selector picks that shard's rows.

    rows: 1-D contiguous int64 (as the client checks them). ``selector`` is a slice (a view, no copy) when
    each owner's rows form one run, as they do for sorted rows; otherwise an index array.
    """
    if len(spec.ranges) == 1:
        yield spec.ranges[0][0], slice(None)
        return
    if kernels.ascending(rows):
        # Sorted rows, the usual case (word2vec's rows come from np.flatnonzero): a binary search per range
        # boundary instead of an owner lookup per row. Rows are known to be below n_rows.
        cuts = rows.searchsorted([lo for _, lo, _ in spec.ranges] + [spec.n_rows]).tolist()
    else:
        owner = np.searchsorted(spec.bounds, rows, side="right")
        if not np.all(owner[:-1] <= owner[1:]):  # owners interleaved: index arrays
            order = np.argsort(owner, kind="stable")
            sizes = np.bincount(owner, minlength=len(spec.ranges))
            for (shard, _, _), selector in zip(spec.ranges, np.split(order, np.cumsum(sizes)[:-1])):
                if len(selector):
                    yield shard, selector
            return
        cuts = np.searchsorted(owner, np.arange(len(spec.ranges) + 1)).tolist()  # grouped by owner, unsorted
    for (shard, _, _), lo, hi in zip(spec.ranges, cuts[:-1], cuts[1:]):
        if hi > lo:
            yield shard, slice(lo, hi)


@dataclass(frozen=True)
class ServerAddress:
    """All a client needs to reach a server: small, picklable, safe to broadcast to Spark executors."""
    endpoints: tuple           # one ZeroMQ endpoint per shard, as clients should dial it
    server_id: int             # random per server; shards reject requests carrying another
    params: tuple              # ParamSpec per parameter, in wire index order
    max_message_bytes: int     # the largest frame a shard accepts
    check_finite: bool = True  # shards refuse NaN, infinity and overflow (clients check across shards first)
    # With encryption (CURVE): the shards' public key, and the one key pair they accept clients with, as
    # Z85 text. A secret: the address is then as sensitive as the parameters (never shown in its repr).
    keys: tuple = field(default=None, repr=False)
