"""deepdist.frames: multipart messages sent and received as pyzmq's own send_multipart and recv_multipart
would, over a real socket pair."""
import time

import numpy as np
import zmq

from deepdist.frames import recv_frames, send_frames, wait_readable


def connected_pair(zmq_socket):
    a, b = zmq_socket(zmq.PAIR), zmq_socket(zmq.PAIR)
    port = a.bind_to_random_port("tcp://127.0.0.1")
    b.connect(f"tcp://127.0.0.1:{port}")
    return a, b


def test_frames_arrive_whole_and_in_order_with_pyzmq_on_the_other_side(zmq_socket):
    """Small frames (pyzmq copies them) and a large array (sent without a copy) in one message, each way
    between these helpers and pyzmq's own multipart calls."""
    a, b = connected_pair(zmq_socket)
    big = np.arange(100_000, dtype=np.float32)  # 400 KB: above pyzmq's copy threshold
    message = [b"header", b"", np.arange(5, dtype=np.int64), big]
    send_frames(a, message)
    assert wait_readable(b, 10_000)
    frames = recv_frames(b)
    assert [bytes(frame.buffer) for frame in frames] == [memoryview(part).tobytes() for part in message]
    assert not wait_readable(b, 0)  # the whole message was taken, nothing is left over

    b.send_multipart([b"one"])  # a single frame, the other way
    assert wait_readable(a, 10_000)
    assert [bytes(frame.buffer) for frame in recv_frames(a)] == [b"one"]
    send_frames(a, [b"x", b"y"])
    assert b.recv_multipart() == [b"x", b"y"]


def test_wait_readable_waits_its_timeout_and_no_longer(zmq_socket):
    a, b = connected_pair(zmq_socket)
    start = time.monotonic()
    assert not wait_readable(b, 200)
    waited = time.monotonic() - start
    assert 0.15 <= waited < 5, waited
    send_frames(a, [b"ready"])
    assert wait_readable(b, 10_000)
    assert wait_readable(b, 0)  # still queued: asking does not take it
    assert [bytes(frame.buffer) for frame in recv_frames(b)] == [b"ready"]
