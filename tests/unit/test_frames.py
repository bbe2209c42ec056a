"""deepdist.frames: multipart messages sent and received as pyzmq's own send_multipart and recv_multipart
would, over a real socket pair."""
import os

import numpy as np
import zmq

from deepdist.frames import next_is_message, recv_frames, send_frames


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
    assert b.poll(10_000)
    frames = recv_frames(b)
    assert [bytes(frame.buffer) for frame in frames] == [memoryview(part).tobytes() for part in message]
    assert not b.poll(0)  # the whole message was taken, nothing is left over

    b.send_multipart([b"one"])  # a single frame, the other way
    assert a.poll(10_000)
    assert [bytes(frame.buffer) for frame in recv_frames(a)] == [b"one"]
    send_frames(a, [b"x", b"y"])
    assert b.poll(10_000)
    assert b.recv_multipart() == [b"x", b"y"]


def test_next_is_message_only_while_a_message_is_queued_and_the_pipe_is_quiet(zmq_socket):
    a, b = connected_pair(zmq_socket)
    read_end, write_end = os.pipe()
    try:
        assert not next_is_message(b, read_end)  # nothing queued
        send_frames(a, [b"ready"])
        assert b.poll(10_000)
        assert next_is_message(b, read_end)
        assert next_is_message(b, read_end)  # asking does not take it
        os.write(write_end, b"command\n")
        assert not next_is_message(b, read_end)  # something waits on the pipe: stop draining for it
        assert os.read(read_end, 100) == b"command\n"
        assert next_is_message(b, read_end)  # the message waited
        assert [bytes(frame.buffer) for frame in recv_frames(b)] == [b"ready"]
        assert not next_is_message(b, read_end)
    finally:
        os.close(read_end)
        os.close(write_end)
