"""Multipart messages in and out of a ZeroMQ socket, for the client and the shards.

pyzmq's ``send_multipart`` and ``recv_multipart`` combine or convert an enum flag for every frame, and
``Socket.poll`` builds a ``Poller`` per call: 1-2 µs each here, and a pull from two shards made about a dozen
such calls. These helpers use plain int flags and ``zmq_poll`` itself. Frames are sent and received with
``copy=False``, as everywhere in deepdist.
"""
import zmq

POLLIN, SNDMORE = int(zmq.POLLIN), int(zmq.SNDMORE)


def send_frames(socket: zmq.Socket, frames, without_copy: bool = False) -> None:
    """``socket.send_multipart(frames, copy=False)``. pyzmq still copies a frame smaller than the socket's
    ``copy_threshold``; with ``without_copy`` the last frame is never copied, so that the buffer it came from
    stays referenced for as long as ZeroMQ holds the message."""
    for frame in frames[:-1]:
        socket.send(frame, SNDMORE, copy=False)
    last = frames[-1]
    if not without_copy or memoryview(last).nbytes >= socket.copy_threshold:
        socket.send(last, 0, copy=False)
        return
    threshold, socket.copy_threshold = socket.copy_threshold, 0
    try:
        socket.send(last, 0, copy=False)
    finally:
        socket.copy_threshold = threshold


def recv_frames(socket: zmq.Socket) -> list:
    """``socket.recv_multipart(copy=False)``: each frame says whether more follow, so no socket option is
    asked per frame."""
    frames = [socket.recv(copy=False)]
    while frames[-1].more:
        frames.append(socket.recv(copy=False))
    return frames


def next_is_message(socket: zmq.Socket, fd: int) -> bool:
    """Whether a message is queued on ``socket`` now and nothing waits to be read on ``fd``: what a loop that
    drains the socket asks before each message, so that it stops for ``fd`` (a control pipe) as soon as
    something arrives there. One ``zmq_poll`` of both, which takes nothing from either."""
    ready = zmq.zmq_poll([(socket, POLLIN), (fd, POLLIN)], 0)
    return len(ready) == 1 and ready[0][0] is socket
