"""A raw ZeroMQ peer sends broken requests: each gets an error reply, nothing is written, service goes on."""
import numpy as np
import pytest
import zmq

from deepdist import Client, ParameterServer
from deepdist import protocol as P

ROWS = 4096  # 128 KiB of float64 rows x 4: cut in two, shard 0 owns [0, 2048)
F64, F32, F16 = (P.DTYPE_CODES[np.dtype(name)] for name in ("<f8", "<f4", "<f2"))


def request(server_id, items, frames, op=P.OP_PUSH, seq=1, scale=1.0, client_id=0):
    return [P.encode_request(op, server_id, client_id, seq, items, scale)] + frames


def rows_push(server_id, rows, values, **kwargs):
    rows = np.asarray(rows, np.int64)
    item = P.Item(0, P.KIND_ROWS, F64, len(rows))
    return request(server_id, [item], [rows.tobytes(), np.asarray(values, np.float64).tobytes()], **kwargs)


def bad_requests(server_id):
    """(name, frames, expected error code, text the message must contain)."""
    good_header = P.encode_request(P.OP_PUSH, server_id, 0, 1, [P.Item(0, P.KIND_ROWS, F64, 1)])
    one_row = [np.array([1], np.int64).tobytes(), np.ones(4).tobytes()]
    inf = np.ones((1, 4))
    inf[0, 3] = np.inf
    return [
        ("truncated header", [good_header[:20]] + one_row, P.ERR_MALFORMED, "shorter than"),
        ("empty message", [b""], P.ERR_MALFORMED, "shorter than"),
        ("bad magic", [b"XX" + good_header[2:]] + one_row, P.ERR_MALFORMED, "bad magic"),
        ("wrong version", [good_header[:2] + bytes([99]) + good_header[3:]] + one_row, P.ERR_VERSION, "version 99"),
        ("unknown op", [good_header[:3] + bytes([77]) + good_header[4:]] + one_row, P.ERR_OP, "operation 77"),
        ("header longer than its items", [good_header + b"\0" * 16] + one_row, P.ERR_MALFORMED, "exactly"),
        ("missing frame", [good_header] + one_row[:1], P.ERR_MALFORMED, "1 data frames"),
        ("extra frame", [good_header] + one_row + [b"x"], P.ERR_MALFORMED, "3 data frames"),
        ("oversized values frame", [good_header, one_row[0], np.ones(5).tobytes()], P.ERR_SHAPE, "40 bytes, 1 rows"),
        ("truncated index frame", [good_header, b"\1\0\0", one_row[1]], P.ERR_MALFORMED, "int64 rows"),
        ("wrong server", rows_push(server_id ^ 1, [1], np.ones((1, 4))), P.ERR_SERVER, "stale address"),
        ("unknown parameter", request(server_id, [P.Item(9, P.KIND_ROWS, F64, 1)], one_row), P.ERR_PARAM,
         "unknown parameter index 9"),
        ("unknown kind", request(server_id, [P.Item(0, 7, F64, 1)], one_row), P.ERR_OP, "item kind 7"),
        ("wrong dtype", request(server_id, [P.Item(0, P.KIND_ROWS, F32, 1)],
                                [one_row[0], np.ones(4, np.float32).tobytes()]), P.ERR_DTYPE, "float64"),
        ("float16 for a float64 parameter", request(server_id, [P.Item(0, P.KIND_ROWS, F16, 1)],
                                                    [one_row[0], np.ones(4, np.float16).tobytes()]),
         P.ERR_DTYPE, "float16 travels only for float32 parameters"),
        ("dense with wrong row count", request(server_id, [P.Item(0, P.KIND_DENSE, F64, 10)],
                                                [np.ones((10, 4)).tobytes()]), P.ERR_SHAPE, "owns 2048"),
        ("row owned by another shard", rows_push(server_id, [ROWS - 1], np.ones((1, 4))), P.ERR_ROWS,
         f"row {ROWS - 1}"),
        ("negative row", rows_push(server_id, [5, -3], np.ones((2, 4))), P.ERR_ROWS, "row -3"),
        ("row past the end", rows_push(server_id, [10**12], np.ones((1, 4))), P.ERR_ROWS, "outside the rows"),
        ("infinite value", rows_push(server_id, [1], inf), P.ERR_NONFINITE, "NaN or infinity"),
        ("nan scale", rows_push(server_id, [1], np.ones((1, 4)), scale=float("nan")), P.ERR_NONFINITE, "scale"),
        # The first item is valid, the second is not: the whole request must be refused, the first unwritten.
        ("second item bad", request(server_id, [P.Item(0, P.KIND_ROWS, F64, 1), P.Item(0, P.KIND_ROWS, F64, 1)],
                                    one_row + [np.array([4000], np.int64).tobytes(), np.ones(4).tobytes()]),
         P.ERR_ROWS, "row 4000"),
        ("pull of rows not owned", request(server_id, [P.Item(0, P.KIND_ROWS, F64, 1)],
                                           [np.array([3000], np.int64).tobytes()], op=P.OP_PULL),
         P.ERR_ROWS, "row 3000"),
        ("dense pull with wrong row count", request(server_id, [P.Item(0, P.KIND_DENSE, F64, 5)], [],
                                                    op=P.OP_PULL),
         P.ERR_SHAPE, "asks for 5 rows, this shard owns 2048"),
        ("reserved item bytes not zero", [good_header[:44] + b"\xff" * 4 + good_header[48:]] + one_row,
         P.ERR_MALFORMED, "reserved bytes are 0xffffffff"),
        ("stats with items", request(server_id, [P.Item(0, P.KIND_DENSE, F64, 2048)], [], op=P.OP_STATS),
         P.ERR_MALFORMED, "STATS takes no items"),
    ]


def test_each_bad_request_gets_an_error_and_writes_nothing(start_server, zmq_socket, recv):
    params = {"w": np.zeros((ROWS, 4)), "b": np.zeros(3, np.float32)}
    ps = start_server(params, shards=2)
    raw = zmq_socket(zmq.DEALER)
    raw.connect(ps.address.endpoints[0])
    good = Client(ps.address, timeout=10)
    cases = bad_requests(ps.address.server_id)
    try:
        for step, (name, frames, code, text) in enumerate(cases):
            raw.send_multipart(frames)
            reply = recv(raw)
            header = P.decode_reply(reply[0])
            assert header.status == P.STATUS_ERROR, name
            assert header.error == code, (name, P.ERRORS.get(header.error), reply[1:])
            assert text in reply[1].decode(), (name, reply[1])
            assert not np.any(ps.params["w"]), f"{name} wrote to the parameters"
            # The shard keeps serving a well-behaved client between bad requests.
            good.push({"b": np.ones(3, np.float32)})
            assert good.pull(["b"])["b"].tolist() == [step + 1] * 3
        stats = good.stats()
    finally:
        good.close()
    assert stats[0]["errors"] == len(cases)
    assert stats[1]["errors"] == 0
    assert stats[0]["errors_by_code"]["ROWS"] == sum(code == P.ERR_ROWS for _, _, code, _ in cases)


def test_retried_push_is_applied_once(start_server, zmq_socket, recv):
    ps = start_server({"w": np.zeros((ROWS, 4))}, shards=2)
    raw = zmq_socket(zmq.DEALER)
    raw.connect(ps.address.endpoints[0])
    push = rows_push(ps.address.server_id, [1, 1], np.ones((2, 4)), client_id=42, seq=5)
    statuses = []
    for frames in [push, push, rows_push(ps.address.server_id, [1], np.ones((1, 4)), client_id=42, seq=4),
                   rows_push(ps.address.server_id, [1], np.ones((1, 4)), client_id=42, seq=6),
                   rows_push(ps.address.server_id, [1], np.ones((1, 4)), client_id=43, seq=1)]:
        raw.send_multipart(frames)
        statuses.append(P.decode_reply(recv(raw)[0]).status)
    assert statuses == [P.STATUS_OK, P.STATUS_DUPLICATE, P.STATUS_DUPLICATE, P.STATUS_OK, P.STATUS_OK]
    assert ps.params["w"][1].tolist() == [4.0] * 4  # 2 + 1 + 1: the retries were not re-applied
    with Client(ps.address) as client:
        assert client.stats()[0]["duplicates"] == 2


def test_peer_that_vanishes_mid_request_does_not_disturb_others(start_server, zmq_socket):
    ps = start_server({"w": np.zeros((ROWS, 4))}, shards=1)
    for _ in range(20):  # ask for the whole parameter, then leave without reading the answer
        raw = zmq_socket(zmq.DEALER)
        raw.connect(ps.address.endpoints[0])
        raw.send_multipart(request(ps.address.server_id, [P.Item(0, P.KIND_DENSE, F64, ROWS)], [], op=P.OP_PULL))
        raw.close(linger=0)
    with Client(ps.address, timeout=10) as client:
        client.push({"w": np.ones((ROWS, 4))})
        assert client.pull()["w"].sum() == ROWS * 4


def test_client_refuses_a_reply_it_cannot_parse():
    with pytest.raises(P.ProtocolError, match="reply header is 3 bytes"):
        P.decode_reply(b"abc")
    with pytest.raises(P.ProtocolError, match="version"):
        P.decode_reply(P.REPLY.pack(P.MAGIC, 9, P.OP_PUSH, 0, 0, 0, 1))


def mutated_requests(server_id, rng, count):
    """``count`` requests made from valid pushes and pulls by random damage to their structure: header bytes
    overwritten, frames cut short, dropped, repeated or added, or whole messages of random bytes. Values
    frames are never altered and hold zeros, so whatever a shard accepts leaves the parameters as they are."""
    rows = np.array([1, 7, 7, 2047], np.int64)
    zeros = np.zeros((len(rows), 4))
    valid = [rows_push(server_id, rows, zeros),
             request(server_id, [P.Item(0, P.KIND_DENSE, F64, 2048)], [np.zeros((2048, 4)).tobytes()]),
             request(server_id, [P.Item(0, P.KIND_ROWS, F64, len(rows))], [rows.tobytes()], op=P.OP_PULL),
             request(server_id, [P.Item(1, P.KIND_DENSE, F32, 3)], [], op=P.OP_PULL),
             request(server_id, [], [], op=P.OP_STATS)]
    for _ in range(count):
        frames = [bytes(frame) for frame in valid[rng.integers(len(valid))]]
        damage = rng.integers(6)
        if damage == 0:  # overwrite 1-4 header bytes (magic, version, op, counts, ids, scale, item fields)
            header = bytearray(frames[0])
            for at in rng.integers(len(header), size=rng.integers(1, 5)):
                header[at] = rng.integers(256)
            frames[0] = bytes(header)
        elif damage == 1:  # cut a frame short
            at = rng.integers(len(frames))
            frames[at] = frames[at][:rng.integers(len(frames[at]) + 1)]
        elif damage == 2 and len(frames) > 1:  # drop a data frame
            del frames[1 + rng.integers(len(frames) - 1)]
        elif damage == 3:  # repeat a frame
            at = rng.integers(len(frames))
            frames.insert(at, frames[at])
        elif damage == 4:  # an extra frame of random bytes
            frames.append(rng.bytes(rng.integers(0, 64)))
        else:  # random bytes, 1-4 frames
            frames = [rng.bytes(rng.integers(0, 120)) for _ in range(rng.integers(1, 5))]
        yield frames


def test_random_damage_is_answered_and_writes_nothing(start_server, zmq_socket, recv):
    """The shard is a network service: 3,000 damaged requests each get exactly one well-formed reply, the
    shard stays up, nothing is written, and a good client is served throughout."""
    values = np.arange(ROWS * 4, dtype=np.float64).reshape(ROWS, 4)
    ps = start_server({"w": values.copy(), "b": np.zeros(3, np.float32)}, shards=2)
    raw = zmq_socket(zmq.DEALER)
    raw.connect(ps.address.endpoints[0])
    rng = np.random.default_rng(7)
    statuses = {P.STATUS_OK: 0, P.STATUS_ERROR: 0, P.STATUS_DUPLICATE: 0}
    with Client(ps.address, timeout=10) as good:
        for step, frames in enumerate(mutated_requests(ps.address.server_id, rng, 3000)):
            raw.send_multipart(frames)
            reply = recv(raw)
            header = P.decode_reply(reply[0])
            statuses[header.status] += 1
            if header.status == P.STATUS_ERROR:
                assert len(reply) == 2 and reply[1].decode(), frames
            if step % 100 == 0:
                good.push({"b": np.ones(3, np.float32)})
        assert good.pull(["b"])["b"].tolist() == [30.0] * 3
        stats = good.stats()
    np.testing.assert_array_equal(ps.params["w"], values)
    assert all(process.poll() is None for process in ps.processes)
    assert statuses[P.STATUS_ERROR] == stats[0]["errors"] > 1000 and statuses[P.STATUS_OK] > 100
    assert "INTERNAL" not in stats[0]["errors_by_code"], stats[0]["errors_by_code"]


def test_a_flood_of_bad_requests_is_counted_but_not_logged_line_by_line(no_leftover_shm, zmq_socket, recv,
                                                                          capfd):
    """A peer looping on bad requests must not flood the driver's log (shards write to its stderr): the first
    10 of a minute are logged, the rest counted in one line; the error counters count every one."""
    with ParameterServer({"w": np.zeros((ROWS, 4))}, shards=1) as ps:
        raw = zmq_socket(zmq.DEALER)
        raw.connect(ps.address.endpoints[0])
        for _ in range(100):
            raw.send_multipart(rows_push(ps.address.server_id, [10**12], np.ones((1, 4))))
            assert P.decode_reply(recv(raw)[0]).status == P.STATUS_ERROR
        with Client(ps.address) as client:
            assert client.stats()[0]["errors_by_code"] == {"ROWS": 100}
    log = capfd.readouterr().err
    assert log.count("rejected a request: ROWS") == 10
    assert "rejected 90 more requests in the last" in log and "90 ROWS" in log


def test_a_small_pull_cannot_make_a_shard_allocate_without_bound(start_server, zmq_socket, recv):
    """8 KB of row indices naming one 512 KB row a thousand times would make a shard allocate and send 512 MB,
    and 1,024 items naming the same parameter whole would answer it 1,024 times: both refused before anything
    is allocated (the limit here: 256 MB, what a message may hold). A client refuses such a pull itself."""
    ps = start_server({"w": np.zeros((8, 1 << 16))}, shards=1)
    raw = zmq_socket(zmq.DEALER)
    raw.connect(ps.address.endpoints[0])
    rows = np.zeros(1000, np.int64)
    dense = P.Item(0, P.KIND_DENSE, F64, 8)
    for frames, size in [(request(ps.address.server_id, [P.Item(0, P.KIND_ROWS, F64, len(rows))], [rows.tobytes()],
                                  op=P.OP_PULL), 524288000),
                         (request(ps.address.server_id, [dense] * P.MAX_ITEMS, [], op=P.OP_PULL), 4294967296)]:
        raw.send_multipart(frames)
        reply = recv(raw)
        assert P.decode_reply(reply[0]).error == P.ERR_SHAPE
        assert f"the pull would answer {size} bytes, more than the limit" in reply[1].decode()
    with Client(ps.address) as client:
        with pytest.raises(ValueError, match="pull fewer rows at a time"):
            client.pull(["w"], rows=rows)
        assert client.pull(["w"], rows=rows[:10])["w"].shape == (10, 1 << 16)  # within the limit: served


def test_a_peer_that_asks_without_reading_cannot_make_a_shard_hold_answers_without_bound(start_server,
                                                                                       zmq_socket, recv):
    """A peer that sends small pulls and reads none of the answers: the shard holds at most
    unread_answer_limit bytes of answers for it (512 MiB here), refuses its pulls beyond that (BACKLOG),
    and serves it again once it has read them. Others are served throughout."""
    import time

    ps = start_server({"w": np.zeros((4096, 1024), np.float32)}, shards=1)  # 16 MiB
    limit = P.unread_answer_limit(P.pull_answer_limit(ps.address.max_message_bytes, 16 << 20))
    assert limit == 512 << 20
    rogue = zmq_socket(zmq.DEALER)
    rogue.rcvhwm = 1
    rogue.setsockopt(zmq.RCVBUF, 4096)
    rogue.connect(ps.address.endpoints[0])
    whole = P.Item(0, P.KIND_DENSE, F32, 4096)
    ask = request(ps.address.server_id, [whole] * 3, [], op=P.OP_PULL)  # 120 bytes asking for 48 MiB
    for _ in range(40):  # 1.9 GiB of answers
        rogue.send_multipart(ask)
    with Client(ps.address, timeout=10) as good:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # until the shard has handled all 40
            stats = good.stats()[0]
            if stats["pulls"] + stats["errors"] >= 40:
                break
            time.sleep(0.05)
        served, refused = stats["pulls"], stats["errors_by_code"].get("BACKLOG", 0)
        assert served + refused == 40 and served <= (limit >> 20) // 48 + 2 and refused > 0, stats
        assert good.pull(["w"], rows=np.arange(4096))["w"].shape == (4096, 1024)  # a large pull, served
    answers = [recv(rogue) for _ in range(40)]
    assert sum(P.decode_reply(answer[0]).status == P.STATUS_OK for answer in answers) == served
    backlog = [answer for answer in answers if P.decode_reply(answer[0]).status == P.STATUS_ERROR]
    assert all(P.decode_reply(answer[0]).error == P.ERR_BACKLOG for answer in backlog)
    assert "are not read yet" in backlog[0][1].decode()
    rogue.send_multipart(ask)  # read up: served again
    assert P.decode_reply(recv(rogue)[0]).status == P.STATUS_OK


def test_a_whole_pull_larger_than_a_message_is_served(start_server):
    """The limit on a pull's answer is never below everything the shard holds: here 3 parameters of 90 MB on
    one shard, 270 MB in all, above the 256 MB a message may hold."""
    ps = start_server({name: np.full((90, 1 << 18), 1.0, np.float32) for name in "abc"}, shards=1)
    assert ps.address.max_message_bytes < 270 << 20
    with Client(ps.address) as client:
        pulled = client.pull()
    assert sorted(pulled) == ["a", "b", "c"] and all(pulled[name].sum() == 90 << 18 for name in "abc")


def test_a_push_whose_sums_would_overflow_is_refused_whole(start_server, zmq_socket, recv):
    """Finite values whose sums would pass the largest float64: refused, nothing of the push written, while
    pushes that come as close without passing it are applied."""
    ps = start_server({"w": np.zeros((ROWS, 4)), "b": np.zeros(3, np.float32)}, shards=2)
    raw = zmq_socket(zmq.DEALER)
    raw.connect(ps.address.endpoints[0])
    good = Client(ps.address, timeout=10)
    big = np.finfo(np.float64).max * 0.6
    server_id = ps.address.server_id
    steps = [  # (push, error code or None, text the message must contain)
        # Each value far from the limit, the sum of the repeated row past it.
        (rows_push(server_id, [5] * 4, np.full((4, 4), big * 0.7)), P.ERR_NONFINITE, "to infinity"),
        (rows_push(server_id, [1], np.full((1, 4), big)), None, ""),
        (rows_push(server_id, [1], np.full((1, 4), big)), P.ERR_NONFINITE, "to infinity"),
        (rows_push(server_id, [5, 5], np.full((2, 4), big)), P.ERR_NONFINITE, "to infinity"),  # a repeated row
        (rows_push(server_id, [5], np.full((1, 4), big / 2), scale=4.0), P.ERR_NONFINITE, "to infinity"),
        (request(server_id, [P.Item(0, P.KIND_ROWS, F64, 1), P.Item(0, P.KIND_ROWS, F64, 1)],  # the second item
                 [np.array([2], np.int64).tobytes(), np.ones(4).tobytes(),
                  np.array([1], np.int64).tobytes(), np.full(4, big).tobytes()]), P.ERR_NONFINITE, "to infinity"),
        (request(server_id, [P.Item(0, P.KIND_DENSE, F64, ROWS // 2)],  # one element of a dense update
                 [np.where(np.arange(ROWS // 2 * 4) == 7, big, 1.0).tobytes()]), P.ERR_NONFINITE, "to infinity"),
        (rows_push(server_id, [1, 6], np.full((2, 4), big), scale=-1.0), None, ""),  # back down: applied
    ]
    expected = np.zeros((ROWS, 4))
    try:
        for step, (frames, code, text) in enumerate(steps):
            raw.send_multipart(frames)
            reply = recv(raw)
            header = P.decode_reply(reply[0])
            if code is None:  # an accepted rows push: expect it added
                assert header.status == P.STATUS_OK, (step, reply[1:])
                scale = P.REQUEST.unpack_from(frames[0])[-1]
                values = np.frombuffer(frames[2]).reshape(-1, 4)
                np.add.at(expected, np.frombuffer(frames[1], np.int64), values * scale)
            else:
                assert (header.status, header.error) == (P.STATUS_ERROR, code), (step, reply[1:])
                assert text in reply[1].decode(), (step, reply[1])
            np.testing.assert_array_equal(ps.params["w"], expected, err_msg=f"step {step}")
            good.push({"b": np.ones(3, np.float32)})
            assert good.pull(["b"])["b"].tolist() == [step + 1] * 3
    finally:
        good.close()
    assert np.isfinite(ps.params["w"]).all()
    np.testing.assert_array_equal(ps.params["w"][[1, 6]], [[0.0] * 4, [-big] * 4])


def test_the_half_precision_wire_refuses_what_it_cannot_carry(start_server, zmq_socket, recv):
    """float16 values for a float32 parameter: the wrong size, NaN or infinity, or a pull whose answer float16
    cannot hold are refused with nothing written, while good float16 pushes and pulls are served."""
    ps = start_server({"h": np.zeros((ROWS, 4), np.float32)}, shards=2)
    raw = zmq_socket(zmq.DEALER)
    raw.connect(ps.address.endpoints[0])
    server_id = ps.address.server_id

    def half_push(rows, values):
        rows = np.asarray(rows, np.int64)
        return request(server_id, [P.Item(0, P.KIND_ROWS, F16, len(rows))],
                       [rows.tobytes(), np.asarray(values, np.float16).tobytes()])

    def half_pull(rows):
        return request(server_id, [P.Item(0, P.KIND_ROWS, F16, len(rows))], [np.asarray(rows, np.int64).tobytes()],
                       op=P.OP_PULL)

    nan = np.full((1, 4), 0.5)
    nan[0, 2] = np.nan
    expected = np.zeros((ROWS, 4), np.float32)
    steps = [  # (request, error code or None, text the message must contain)
        (half_push([3, 3], np.full((2, 4), 0.25)), None, ""),
        (half_push([3, 3], np.full((2, 4), 65504.0)), None, ""),  # float16's largest: added in float32
        (half_push([3], np.full((1, 8), 1.0))[:2] + [np.ones(8, np.float16).tobytes()], P.ERR_SHAPE,
         "need 8"),  # one row of 4 float16 values is 8 bytes
        (request(server_id, [P.Item(0, P.KIND_ROWS, F16, 1)], [np.array([3], np.int64).tobytes(),
                                                              np.ones(4, np.float32).tobytes()]),
         P.ERR_SHAPE, "float16"),  # float32 values under a float16 code
        (half_push([4], np.full((1, 4), np.inf)), P.ERR_NONFINITE, "NaN or infinity"),
        (half_push([4], nan), P.ERR_NONFINITE, "NaN or infinity"),
        (half_pull([3, 0]), P.ERR_DTYPE, "float16 cannot carry"),  # row 3 now holds 131008.5
        (half_pull([0, 1]), None, ""),
    ]
    expected[3] = np.float32(0.5) + np.float32(65504) + np.float32(65504)
    for step, (frames, code, text) in enumerate(steps):
        raw.send_multipart(frames)
        reply = recv(raw)
        header = P.decode_reply(reply[0])
        if code is None:
            assert header.status == P.STATUS_OK, (step, reply[1:])
        else:
            assert (header.status, header.error) == (P.STATUS_ERROR, code), (step, reply[1:])
            assert text in reply[1].decode(), (step, reply[1])
    np.testing.assert_array_equal(ps.params["h"], expected)
    assert np.frombuffer(reply[1], np.float16).tolist() == [0.0] * 8  # the last pull's answer, in float16
    with Client(ps.address, timeout=10) as good:
        assert good.stats()[0]["errors_by_code"] == {"SHAPE": 2, "NONFINITE": 2, "DTYPE": 1}
        # The same parameter pulled as float32 carries what float16 could not.
        assert good.pull(["h"], rows=np.array([3]))["h"].tolist() == [[131008.5] * 4]
