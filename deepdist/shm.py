"""Shared-memory numpy buffers: the server creates them, shards attach to them, the server unlinks them.

The creating process uses ``multiprocessing.shared_memory`` so that Python's resource tracker unlinks the
segments even if the driver is killed. Shards attach without registering with any tracker (Python 3.11
registers every attach, and a tracker of a process that is not the owner would unlink the segment when that
process exits); see ``attach``.
"""
from __future__ import annotations

import ctypes
import math
import mmap
import os
import secrets
import sys
from multiprocessing import shared_memory

import numpy as np

PREFIX = "deepdist-"
MOVE_BLOCK = 64 << 20  # bytes moved into or out of a segment between releases of pages (a multiple of pages)


class Segment:
    """One shared-memory segment holding one array; ``array`` is a live view of it."""

    def __init__(self, name: str, mapping: mmap.mmap, dtype, shape, owner=None):
        self.name = name
        # np.frombuffer holds an export of the mapping for as long as any view of the array lives, so the
        # mapping cannot be closed under a view that outlives the segment (np.ndarray(buffer=...) holds none:
        # reading such a view after close() was a segfault).
        self.array = np.frombuffer(mapping, np.dtype(dtype), count=math.prod(shape)).reshape(shape)
        self._mapping = mapping
        self._owner = owner  # the SharedMemory object when this process created the segment: it unlinks

    def close(self) -> bool:
        """Drop this process's mapping; returns False if live views still use it (then it stays mapped
        until they are garbage; the memory itself is freed once unlinked and unmapped everywhere)."""
        self.array = None
        try:
            self._mapping.close()
        except BufferError:
            return False
        return True

    def move_out(self) -> np.ndarray:
        """A private copy of the array, made block by block, each block's shared pages given back to the
        system (MADV_REMOVE, Linux) once copied: the copy and the segment together never hold more than the
        array and one block. Views of the segment read zeros afterwards. Call before ``unlink``.

        Interrupted part way (an exception between blocks), the segment gets back the values of the pages it
        gave up, so that it still holds them all, and the exception goes on."""
        out = np.empty_like(self.array, order="C")
        remove = getattr(mmap, "MADV_REMOVE", None)
        moved = 0  # bytes whose pages may have been given back

        def release(start, stop):
            nonlocal moved
            moved = stop  # before the pages go: an interrupt between the two must not miss them
            self._mapping.madvise(remove, start, stop - start)

        try:
            move_blocks(self.array, out, None if remove is None else release)
        except BaseException:
            self.array.reshape(-1).view(np.uint8)[:moved] = out.reshape(-1).view(np.uint8)[:moved]
            raise
        return out

    def unlink(self) -> None:
        """Remove the segment's name; idempotent."""
        if self._owner is not None:
            try:
                self._owner.unlink()
            except FileNotFoundError:
                pass


def create(array: np.ndarray, tag: str = "", move: bool = False) -> Segment:
    """A new segment initialised with a copy of ``array``.

    move: the caller hands ``array`` over. It is copied block by block, and each block's pages go back to
    the system once copied (``release_pages``), so that the array and the segment never hold more than the
    values and one block between them; ``array`` reads zeros afterwards. Only for an array that owns its
    memory (not a view, whose base others may read) and only on Linux; otherwise the copy leaves it as it is.
    """
    name = f"{PREFIX}{os.getpid()}-{tag}-{secrets.token_hex(4)}"
    shm = shared_memory.SharedMemory(name=name, create=True, size=max(array.nbytes, 1))
    # SharedMemory registers the name with the resource tracker (which unlinks it if this process dies);
    # its own mapping exports a buffer that cannot outlive close(), so the array lives in a mapping of ours.
    try:
        segment = Segment(shm.name, map_segment(shm.name), array.dtype, array.shape, owner=shm)
    except BaseException:
        shm.close()
        shm.unlink()
        raise
    shm.close()
    source, moved = None, 0  # when moving: array's bytes, and how many are given back (only in the segment now)

    def release(start, stop):
        nonlocal moved
        moved = stop  # before the pages go: an interrupt between the two must not miss them
        release_pages(source[start:stop])

    try:
        if move and can_release(array):
            source = array.reshape(-1).view(np.uint8)
            move_blocks(array, segment.array, release)
        else:
            np.copyto(segment.array, array)
    except BaseException:  # an error or an interrupt part way: the caller keeps its values, nothing is left
        if moved:
            source[:moved] = segment.array.reshape(-1).view(np.uint8)[:moved]
        segment.unlink()
        segment.close()
        raise
    return segment


def move_blocks(src: np.ndarray, dst: np.ndarray, release) -> None:
    """Copy C-contiguous ``src`` into ``dst`` MOVE_BLOCK bytes at a time, calling ``release(start, stop)``
    (byte offsets) after each block, if given, to give the copied block's pages back."""
    src, dst = src.reshape(-1).view(np.uint8), dst.reshape(-1).view(np.uint8)
    for start in range(0, len(src), MOVE_BLOCK):
        stop = min(len(src), start + MOVE_BLOCK)
        dst[start:stop] = src[start:stop]
        if release is not None:
            release(start, stop)


def can_release(array: np.ndarray) -> bool:
    """Whether ``release_pages`` may empty ``array``: its own contiguous, writable memory, on Linux."""
    return (sys.platform.startswith("linux") and array.flags.owndata and array.flags.c_contiguous
            and array.flags.writeable)


def release_pages(block: np.ndarray) -> None:
    """Give the whole pages inside ``block``'s memory back to the system: they read zeros afterwards and
    cost nothing until written again (``madvise(MADV_DONTNEED)`` on private memory, Linux). The partial
    pages at either end are left as they are."""
    start, stop = block.ctypes.data, block.ctypes.data + block.nbytes
    first = -(-start // mmap.PAGESIZE) * mmap.PAGESIZE
    last = stop // mmap.PAGESIZE * mmap.PAGESIZE
    if last > first and _madvise(first, last - first, mmap.MADV_DONTNEED) != 0:
        raise OSError(ctypes.get_errno(), f"madvise(MADV_DONTNEED) failed: {os.strerror(ctypes.get_errno())}")


def _libc_madvise():
    if not sys.platform.startswith("linux"):
        return None
    madvise = ctypes.CDLL(None, use_errno=True).madvise
    madvise.argtypes, madvise.restype = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int), ctypes.c_int
    return madvise


_madvise = _libc_madvise()


def attach(name: str, dtype, shape) -> Segment:
    """Map an existing segment read-write without registering it with a resource tracker."""
    return Segment(name, map_segment(name), dtype, tuple(shape))


def map_segment(name: str) -> mmap.mmap:
    """The whole segment ``name``, mapped read-write, registered with no resource tracker."""
    from _posixshmem import shm_open  # the POSIX call SharedMemory itself makes; public API registers

    fd = shm_open("/" + name, os.O_RDWR, mode=0o600)
    try:
        return mmap.mmap(fd, os.fstat(fd).st_size)
    finally:
        os.close(fd)


def leftover(prefix: str = PREFIX) -> list:
    """Names of deepdist segments still present on this host (Linux), for tests and diagnostics."""
    try:
        return sorted(f for f in os.listdir("/dev/shm") if f.startswith(prefix))
    except FileNotFoundError:
        return []
