"""Encoding and decoding of the wire structs (the shard-level checks are in tests/integration)."""
import pytest

from deepdist import protocol as P


def test_request_round_trip_and_peek():
    items = [P.Item(3, P.KIND_ROWS, 2, 17), P.Item(0, P.KIND_DENSE, 1, 5)]
    header = P.encode_request(P.OP_PUSH, 11, 22, 33, items, scale=-0.25)
    assert len(header) == P.REQUEST.size + 2 * P.ITEM.size == 72
    request = P.decode_request(header, n_frames=3)  # ROWS push: 2 frames, DENSE push: 1
    assert (request.op, request.server_id, request.client_id, request.seq, request.scale) == (P.OP_PUSH, 11, 22, 33, -0.25)
    assert request.items == tuple(items)
    assert P.peek(header) == (P.OP_PUSH, 33)
    assert P.peek(header[:10]) == (0, 0)
    assert "PUSH client=0000000000000016 seq=33" in str(request)


def test_pull_frame_counts():
    header = P.encode_request(P.OP_PULL, 1, 1, 1, [P.Item(0, P.KIND_DENSE, 1, 5), P.Item(0, P.KIND_ROWS, 1, 2)])
    assert len(P.decode_request(header, n_frames=1).items) == 2
    with pytest.raises(P.ProtocolError) as raised:
        P.decode_request(header, n_frames=2)
    assert raised.value.code == P.ERR_MALFORMED


def test_too_many_items_is_refused_before_parsing_them():
    header = P.REQUEST.pack(P.MAGIC, P.VERSION, P.OP_PUSH, P.MAX_ITEMS + 1, 0, 1, 1, 1, 1.0)
    with pytest.raises(P.ProtocolError, match="more than the limit"):
        P.decode_request(header, 0)


def test_reply_round_trip():
    reply = P.decode_reply(P.encode_reply(P.OP_PULL, P.STATUS_ERROR, 9, n_items=0, error=P.ERR_ROWS))
    assert reply == P.Reply(P.OP_PULL, P.STATUS_ERROR, 0, P.ERR_ROWS, 9)
