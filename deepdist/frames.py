"""Multipart messages in and out of a ZeroMQ socket, for the client and the shards.

pyzmq's ``send_multipart`` and ``recv_multipart`` combine or convert an enum flag for every frame, and
``Socket.poll`` builds a ``Poller`` per call: 1-2 µs each here, and a pull from two shards made about a dozen
such calls. These helpers use plain int flags and ``zmq_poll`` itself. Frames are sent and received with
``copy=False``, as everywhere in deepdist.
"""
import zmq

POLLIN, SNDMORE = int(zmq.POLLIN), int(zmq.SNDMORE)


def send_frames(socket: zmq.Socket, frames) -> None:
    """``socket.send_multipart(frames, copy=False)``."""
    for frame in frames[:-1]:
        socket.send(frame, SNDMORE, copy=False)
    socket.send(frames[-1], 0, copy=False)


def recv_frames(socket: zmq.Socket) -> list:
    """``socket.recv_multipart(copy=False)``: each frame says whether more follow, so no socket option is
    asked per frame."""
    frames = [socket.recv(copy=False)]
    while frames[-1].more:
        frames.append(socket.recv(copy=False))
    return frames


def wait_readable(socket: zmq.Socket, timeout_ms: int) -> bool:
    """Whether a message can be received from ``socket`` within ``timeout_ms`` (0: is one queued now)."""
    return bool(zmq.zmq_poll([(socket, POLLIN)], timeout_ms))
