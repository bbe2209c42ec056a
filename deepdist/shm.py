"""Shared-memory numpy buffers: the server creates them, shards attach to them, the server unlinks them.

The creating process uses ``multiprocessing.shared_memory`` so that Python's resource tracker unlinks the
segments even if the driver is killed. Shards attach without registering with any tracker (Python 3.11
registers every attach, and a tracker of a process that is not the owner would unlink the segment when that
process exits); see ``attach``.
"""
from __future__ import annotations

import mmap
import os
import secrets
from multiprocessing import shared_memory

import numpy as np

PREFIX = "deepdist-"


class Segment:
    """One shared-memory segment holding one array; ``array`` is a live view of it."""

    def __init__(self, name: str, buffer, dtype, shape, owner=None):
        self.name = name
        self.array = np.ndarray(shape, dtype=dtype, buffer=buffer)
        self._buffer = buffer
        self._owner = owner  # the SharedMemory object when this process created the segment

    def close(self) -> bool:
        """Drop this process's mapping; returns False if live views still use it (then it stays mapped
        until they are garbage; the memory itself is freed once unlinked and unmapped everywhere)."""
        self.array = None
        try:
            (self._owner if self._owner is not None else self._buffer).close()
        except BufferError:
            return False
        return True

    def unlink(self) -> None:
        """Remove the segment's name; idempotent."""
        if self._owner is not None:
            try:
                self._owner.unlink()
            except FileNotFoundError:
                pass


def create(array: np.ndarray, tag: str = "") -> Segment:
    """A new segment initialised with a copy of ``array``."""
    name = f"{PREFIX}{os.getpid()}-{tag}-{secrets.token_hex(4)}"
    shm = shared_memory.SharedMemory(name=name, create=True, size=max(array.nbytes, 1))
    segment = Segment(shm.name, shm.buf, array.dtype, array.shape, owner=shm)
    np.copyto(segment.array, array)
    return segment


def attach(name: str, dtype, shape) -> Segment:
    """Map an existing segment read-write without registering it with a resource tracker."""
    from _posixshmem import shm_open  # the POSIX call SharedMemory itself makes; public API registers

    fd = shm_open("/" + name, os.O_RDWR, mode=0o600)
    try:
        size = os.fstat(fd).st_size
        buffer = mmap.mmap(fd, size)
    finally:
        os.close(fd)
    return Segment(name, buffer, np.dtype(dtype), tuple(shape))


def leftover(prefix: str = PREFIX) -> list:
    """Names of deepdist segments still present on this host (Linux), for tests and diagnostics."""
    try:
        return sorted(f for f in os.listdir("/dev/shm") if f.startswith(prefix))
    except FileNotFoundError:
        return []
