"""Exceptions deepdist raises; all derive from DeepDistError."""
from __future__ import annotations


class DeepDistError(Exception):
    """Base class of deepdist's own errors."""


class ShardTimeout(DeepDistError, TimeoutError):
    """A shard did not answer (or accept a send) within the client's timeout: dead, stopped or unreachable."""

    def __init__(self, shard: int, endpoint: str, timeout: float, waiting_for: str):
        super().__init__(f"shard {shard} at {endpoint} did not {waiting_for} within {timeout:g} s: is the "
                         f"server alive and reachable from this host (advertised address, firewall)?")
        self.shard, self.endpoint, self.timeout = shard, endpoint, timeout


class RequestError(DeepDistError):
    """A shard rejected a request; nothing of that shard's part of it was applied. (A push split over shards
    is checked whole by the client before it is sent; a shard can still refuse its part for sums that would
    overflow there, while the others apply theirs: docs/protocol.md, section 7.)

    ``code`` is the protocol's error code name (e.g. 'ROWS'), ``message`` the shard's explanation. When several
    earlier pushes failed, the first is raised and ``others`` holds the rest.
    """

    def __init__(self, shard: int, endpoint: str, code: str, message: str, others=()):
        more = f" (and {len(others)} more rejected requests)" if others else ""
        super().__init__(f"shard {shard} at {endpoint} rejected a request: {message}{more}")
        self.shard, self.endpoint, self.code, self.message, self.others = shard, endpoint, code, message, others


class ShardDied(DeepDistError):
    """A shard process exited while the server was running."""
