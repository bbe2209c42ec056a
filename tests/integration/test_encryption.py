"""ParameterServer(encrypt=True): CURVE on every connection. Clients holding the address's keys are served
as usual; a peer without them, or with a key pair of its own, gets nothing and writes nothing."""
import numpy as np
import zmq

from deepdist import Client, DeepDist
from deepdist import protocol as P

ROWS = 20_000  # float64 rows of 4: cut over two shards


def test_an_encrypting_server_serves_its_clients_exactly(start_server):
    ps = start_server({"w": np.zeros((ROWS, 4)), "b": np.zeros(3)}, shards=2, encrypt=True)
    assert len(ps.address.params[0].ranges) == 2
    rows = np.array([0, 5, 5, ROWS - 1])
    with Client(ps.address, timeout=10) as client:
        for _ in range(10):
            client.push({"w": np.ones((ROWS, 4)), "b": np.full(3, 2.0)})
            client.push({"w": (rows, np.ones((4, 4)))})
        pulled = client.pull()
    expected = np.full((ROWS, 4), 10.0)
    np.add.at(expected, rows, 10.0)
    np.testing.assert_array_equal(pulled["w"], expected)
    np.testing.assert_array_equal(pulled["b"], 20.0)


def test_peers_without_the_clients_key_pair_get_nothing_and_write_nothing(start_server, zmq_socket):
    ps = start_server({"w": np.zeros((ROWS, 4))}, shards=1, encrypt=True)
    server_public = ps.address.keys[0].encode()
    push = [P.encode_request(P.OP_PUSH, ps.address.server_id, 7, 1, [P.Item(0, P.KIND_DENSE, 1, ROWS)]),
            np.ones((ROWS, 4)).tobytes()]
    plain = zmq_socket(zmq.DEALER)
    other = zmq_socket(zmq.DEALER)  # CURVE, with the shards' public key, but a key pair of its own
    other.curve_serverkey = server_public
    other.curve_publickey, other.curve_secretkey = zmq.curve_keypair()
    for peer in (plain, other):
        peer.sndtimeo = 0  # a DEALER with no connection that completed its handshake cannot send at all
        peer.connect(ps.address.endpoints[0])
        try:
            peer.send_multipart(push)
        except zmq.Again:
            pass
        assert not peer.poll(2000), "a peer without the clients' key pair got an answer"
    with Client(ps.address, timeout=10) as client:
        assert client.stats()[0]["pushes"] == 0
        np.testing.assert_array_equal(client.pull()["w"], 0)


def test_the_address_carries_the_clients_keys_but_does_not_show_them(start_server):
    ps = start_server({"w": np.zeros(3)}, shards=1, encrypt=True)
    server_public, client_public, client_secret = ps.address.keys
    assert len({server_public, client_public, client_secret}) == 3 and len(client_secret) == 40  # Z85
    assert client_secret not in repr(ps.address) and "keys" not in repr(ps.address)
    assert start_server({"w": np.zeros(3)}, shards=1).address.keys is None  # off by default


def add_index(model, data):
    delta = np.zeros_like(model["w"])
    for i in data:
        delta[i % len(delta)] += 1.0
    return {"w": delta}


def test_deepdist_trains_through_encrypted_shards(spark_context, no_leftover_shm):
    model = {"w": np.zeros((ROWS, 4))}
    with DeepDist(model, encrypt=True, progress=False) as dd:
        assert dd.address.keys is not None
        dd.train(spark_context.parallelize(range(1000), 4), add_index, batch=50)
    expected = np.zeros((ROWS, 4))
    expected[:1000] = 1.0
    np.testing.assert_array_equal(model["w"], expected)


def test_an_encrypted_frame_as_large_as_the_limit_is_served(start_server, monkeypatch):
    """ZeroMQ checks a frame's size as it arrives, and an encrypted frame is the frame plus CURVE's envelope:
    a frame of exactly max_message_bytes is served as it is without encryption, not dropped with its
    connection (the client then waited out its timeout)."""
    import deepdist.server

    monkeypatch.setattr(deepdist.server, "MIN_MESSAGE_LIMIT", 1 << 20)
    ps = start_server({"w": np.zeros((ROWS, 4))}, shards=1, encrypt=True)
    limit = ps.address.max_message_bytes
    rows = np.arange(limit // 32) % ROWS  # a values frame of exactly the limit: 32 bytes a row
    assert len(rows) * 32 == limit
    with Client(ps.address, timeout=10) as client:
        client.push({"w": (rows, np.ones((len(rows), 4)))})
        pulled = client.pull()["w"]
    expected = np.zeros((ROWS, 4))
    np.add.at(expected, rows, 1.0)
    np.testing.assert_array_equal(pulled, expected)
