"""The shard process's own settings (its request handling is tested through real sockets in integration/)."""
import platform
import subprocess
import sys

import pytest

# Run in a fresh interpreter: the setting is process-wide and must not leak into the test process.
PROBE = """
import ctypes, sys
from deepdist.shard import keep_freed_memory

class Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Mallinfo2
libc.malloc.restype, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
tuned = keep_freed_memory() if sys.argv[1] == "tuned" else None
mapped_before = libc.mallinfo2().hblkhd
buffer = libc.malloc(8 << 20)  # a message buffer as libzmq allocates one
mapped = libc.mallinfo2().hblkhd - mapped_before
heap_in_use = libc.mallinfo2().arena
libc.free(buffer)
print(tuned, mapped, heap_in_use - libc.mallinfo2().arena)
"""


def probe(mode):
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, timeout=60, check=True)
    tuned, mapped, returned = out.stdout.split()
    return tuned, int(mapped), int(returned)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt and mallinfo2 are glibc's")
def test_shard_keeps_freed_message_buffers_on_the_heap():
    # glibc's defaults: an 8 MB buffer is mapped on its own and unmapped on free (fresh pages next time).
    _, mapped, _ = probe("default")
    assert mapped >= 8 << 20
    # A shard's setting: the buffer comes from the heap, and freeing it gives nothing back to the kernel.
    tuned, mapped, returned = probe("tuned")
    assert tuned == "True"
    assert mapped == 0 and returned == 0
