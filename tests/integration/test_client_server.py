"""The public contract of ParameterServer and Client, against real shard processes."""
import dataclasses
import os
import pickle
import signal
import socket
import warnings

import numpy as np
import pytest

from deepdist import Client, ParameterServer, RequestError
from deepdist import protocol as P


def make_params(rows=1000, dim=16):
    rng = np.random.default_rng(0)
    return {
        "w": rng.integers(-5, 5, (rows, dim)).astype(np.float64),
        "v": rng.standard_normal((rows, 4, 3)).astype(np.float32),  # rows are the first axis of any shape
        "b": np.zeros(7, np.float64),                                 # small: lives whole on one shard
    }


@pytest.mark.parametrize("shards", [1, 2, 3])
def test_dense_sparse_and_scaled_pushes(start_server, shards):
    params = make_params()
    expected = {name: array.copy() for name, array in params.items()}
    ps = start_server(params, shards=shards)
    rng = np.random.default_rng(1)
    with Client(ps.address) as client:
        delta = rng.integers(-3, 3, (1000, 16)).astype(np.float64)
        client.push({"w": delta})
        expected["w"] += delta
        rows = np.array([0, 999, 5, 5, 5, 500, 0])  # repeats accumulate
        values = rng.integers(-3, 3, (7, 16)).astype(np.float64)
        client.push({"w": (rows, values)})
        np.add.at(expected["w"], rows, values)
        client.push({"w": delta, "b": np.arange(7.0)}, scale=-0.5)
        expected["w"] -= 0.5 * delta
        expected["b"] -= 0.5 * np.arange(7.0)
        v_rows = np.array([3, 999, 3])
        v_values = rng.standard_normal((3, 4, 3)).astype(np.float32)
        client.push({"v": (v_rows, v_values)})
        np.add.at(expected["v"], v_rows, v_values)
        pulled = client.pull()
    for name in params:
        np.testing.assert_array_equal(pulled[name], expected[name], err_msg=name)
        np.testing.assert_array_equal(ps.params[name], expected[name], err_msg=name)


@pytest.mark.parametrize("shards", [1, 2])
def test_no_rows_is_a_push_and_pull_of_nothing(start_server, shards):
    # A gradient may touch no row of a parameter: its update is (empty rows, empty values), not an error.
    params = make_params()
    ps = start_server(params, shards=shards)
    with Client(ps.address) as client:
        client.push({"w": (np.array([], np.int64), np.zeros((0, 16))), "v": ([], np.zeros((0, 4, 3), np.float32))})
        client.flush()
        pulled = client.pull(["w", "v"], rows=[])
        assert pulled["w"].shape == (0, 16) and pulled["v"].shape == (0, 4, 3)
        assert client.stats()[0]["errors"] == 0
    for name in params:
        np.testing.assert_array_equal(ps.params[name], params[name], err_msg=name)


@pytest.mark.parametrize("shards", [1, 2])  # 1: each array is the reply frame itself; 2: put together
def test_pull_rows_and_names(start_server, shards):
    params = make_params()
    ps = start_server(params, shards=shards)
    with Client(ps.address) as client:
        rows = np.array([999, 0, 500, 499, 0])
        pulled = client.pull(["w", "v"], rows=rows)
        assert set(pulled) == {"w", "v"}
        np.testing.assert_array_equal(pulled["w"], params["w"][rows])
        np.testing.assert_array_equal(pulled["v"], params["v"][rows])
        assert client.pull("b")["b"].shape == (7,)
        pulled["w"][:] = 123  # a private copy: the server's values do not change
        np.testing.assert_array_equal(client.pull(["w"])["w"], params["w"])


def test_live_view_and_final_values_handed_back(no_leftover_shm):
    params = {"w": np.zeros((100, 8), np.float32)}
    original = params["w"]
    with ParameterServer(params, shards=2) as ps:
        live = ps.params["w"]
        assert not np.shares_memory(live, original)
        with Client(ps.address) as client:
            client.push({"w": np.ones((100, 8), np.float32)})
        assert live.sum() == 800  # the view sees what the shards applied
        live[0, 0] = 10           # and writes through to the master copy
        with Client(ps.address) as client:
            assert client.pull(["w"], rows=[0])["w"][0, 0] == 10
    assert params["w"] is original and original[0, 0] == 10 and original.sum() == 809
    assert ps.params["w"] is original


def test_without_copy_back_the_server_lets_go_of_the_given_arrays(no_leftover_shm):
    import gc
    import weakref

    from deepdist import ParameterServer
    params = {"w": np.full((300_000, 8), 2.0), "b": np.zeros(3)}  # w: 19 MB, moved out in several blocks
    original = weakref.ref(params["w"])
    with ParameterServer(params, shards=2, copy_back=False) as ps:
        params.clear()  # the caller drops its arrays, as DeepDist does
        gc.collect()
        assert original() is None  # nothing of the server's kept them alive: their memory is free
        with Client(ps.address) as client:
            client.push({"w": np.ones((300_000, 8)), "b": np.arange(3.0)})
    assert ps.params["w"].shape == (300_000, 8) and (ps.params["w"] == 3.0).all()
    np.testing.assert_array_equal(ps.params["b"], np.arange(3.0))
    ps.params["w"][0, 0] = 7.0  # private and writable


def test_address_is_small_and_picklable(start_server):
    ps = start_server({"w": np.zeros((100_000, 100), np.float32), "b": np.zeros(100)}, shards=2)
    blob = pickle.dumps(ps.address)
    assert len(blob) < 2000
    address = pickle.loads(blob)
    with Client(address) as client:
        client.push({"b": np.ones(100)})
        assert client.pull(["b"])["b"].sum() == 100


def test_mostly_zero_dense_delta_travels_as_rows(start_server):
    ps = start_server({"w": np.zeros((10_000, 50), np.float32)}, shards=2)
    delta = np.zeros((10_000, 50), np.float32)
    delta[[3, 7000, 9999]] = 1.0
    with Client(ps.address) as client:
        client.push({"w": delta})
        client.flush()
        sent = sum(stats["bytes_in"] for stats in client.stats())
        with Client(ps.address, sparsify=False) as dense_client:
            dense_client.push({"w": delta})
            dense_client.flush()
        after = sum(stats["bytes_in"] for stats in client.stats())
        np.testing.assert_array_equal(client.pull()["w"], 2 * delta)
    assert sent < 2_000             # three rows and their indices, not 2 MB
    assert after - sent > 2_000_000  # the same delta sent dense


@pytest.mark.parametrize("update, error, text", [
    ({"nope": np.zeros(3)}, KeyError, "unknown parameter 'nope'"),
    ({"w": np.zeros((100, 8), np.float32)}, TypeError, "dtype float32"),
    ({"w": np.zeros((100, 9))}, ValueError, "shape (100, 9)"),
    ({"w": [[0.0] * 8] * 100}, TypeError, "numpy array"),
    ({"w": (np.array([0, 100]), np.zeros((2, 8)))}, IndexError, "[0, 100)"),
    ({"w": (np.array([-1]), np.zeros((1, 8)))}, IndexError, "[0, 100)"),
    ({"w": (np.array([0.5]), np.zeros((1, 8)))}, TypeError, "integer"),
    ({"w": (np.array([2**63 + 5], np.uint64), np.zeros((1, 8)))}, IndexError, "got [9223372036854775813, "),
    ({"w": (np.array([0, 1]), np.zeros((3, 8)))}, ValueError, "shape (3, 8)"),
])
def test_client_mistakes_raise_before_sending(start_server, update, error, text):
    ps = start_server({"w": np.zeros((100, 8))}, shards=2)
    with Client(ps.address) as client:
        with pytest.raises(error) as raised:
            client.push(update)
        assert text in str(raised.value)
        assert all(s["pushes"] == 0 and s["errors"] == 0 for s in client.stats())  # nothing reached a shard
        np.testing.assert_array_equal(client.pull()["w"], 0)


def test_scale_must_be_a_real_number(start_server):
    ps = start_server({"w": np.zeros((100, 8))}, shards=2)
    with Client(ps.address) as client:
        for scale in (1j, "2", None):
            with pytest.raises(TypeError, match="scale must be a real number"):
                client.push({"w": np.ones((100, 8))}, scale=scale)
        assert all(s["pushes"] == 0 for s in client.stats())
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # numpy scalars, compared with the limits as Python floats
            for scale in (np.float32(2), np.int64(3), True):
                client.push({"w": np.ones((100, 8))}, scale=scale)
        np.testing.assert_array_equal(client.pull()["w"], 6)


@pytest.mark.parametrize("timeout", [0, 0.0004, -1, float("inf"), float("nan"), 3e6, True, "5"])
def test_a_timeout_zeromq_cannot_wait_is_refused(start_server, timeout):
    ps = start_server({"w": np.zeros((100, 8))}, shards=1)
    with pytest.raises(ValueError, match=r"timeout must be seconds from 0.001 to 2.14748e\+06"):
        Client(ps.address, timeout=timeout)


def test_a_closed_client_says_so(start_server):
    ps = start_server({"w": np.zeros((100, 8))}, shards=2)
    client = Client(ps.address)
    client.close()
    for use in (lambda: client.push({"w": np.zeros((100, 8))}), client.pull, client.stats, client.flush):
        with pytest.raises(RuntimeError, match="this Client is closed"):
            use()
    client.close()  # closing again is harmless


def test_nonfinite_push_is_rejected_by_the_shard_and_raised_at_flush(start_server):
    ps = start_server({"w": np.zeros((100, 8))}, shards=2)
    with Client(ps.address) as client:
        bad = np.zeros((100, 8))
        bad[99, 0] = np.nan
        bad[1, 1] = 1.0
        client.push({"w": bad})  # pipelined: returns before the shard answers
        with pytest.raises(RequestError, match="NaN or infinity") as raised:
            client.flush()
        assert raised.value.code == "NONFINITE"
        np.testing.assert_array_equal(client.pull()["w"], 0)  # neither shard wrote its part
        client.push({"w": np.ones((100, 8))})
        assert client.pull()["w"].sum() == 800  # the client is still usable


@pytest.mark.parametrize("wire_dtype", [None, "float16"])
@pytest.mark.parametrize("bad, scale", [(np.nan, 1.0), (np.inf, 1.0), (1e30, 1e10)])
def test_a_push_split_over_shards_with_values_a_shard_would_refuse_is_refused_before_sending(
        start_server, bad, scale, wire_dtype):
    """Each shard checks only its own part: without the client's check the shards whose parts are fine would
    apply them. (float16 cannot carry 1e30: there the rounding refuses it.)"""
    ps = start_server({"w": np.zeros((20_000, 8), np.float32)}, shards=2)
    assert len(ps.address.params[0].ranges) == 2
    update = np.ones((20_000, 8), np.float32)
    update[19_999, 3] = bad  # in the second shard's rows
    with Client(ps.address, wire_dtype=wire_dtype) as client:
        for push in ({"w": update}, {"w": (np.array([0, 19_999]), update[[0, 19_999]])}):
            with pytest.raises(ValueError, match="'w'"):
                client.push(push, scale=scale)
        assert all(s["pushes"] == 0 and s["errors"] == 0 for s in client.stats())  # nothing reached a shard
        np.testing.assert_array_equal(client.pull()["w"], 0)


def test_without_check_finite_a_client_sends_what_it_is_given(start_server):
    ps = start_server({"w": np.zeros((20_000, 8))}, shards=2, check_finite=False)
    update = np.ones((20_000, 8))
    update[19_999, 3] = np.nan
    with Client(ps.address) as client:
        client.push({"w": update})
        pulled = client.pull()["w"]
    assert np.isnan(pulled[19_999, 3]) and np.nansum(pulled) == update.size - 1


def test_a_push_that_would_overflow_float32_is_refused_and_raised_at_flush(start_server):
    ps = start_server({"w": np.zeros((100, 8), np.float32)}, shards=2)
    near = np.float32(2.5e38)  # the largest float32 is 3.4e38
    with Client(ps.address) as client:
        client.push({"w": (np.array([3, 97]), np.full((2, 8), near))})
        client.flush()
        client.push({"w": (np.array([3]), np.full((1, 8), near))})
        with pytest.raises(RequestError, match="to infinity") as raised:
            client.flush()
        assert raised.value.code == "NONFINITE"
        client.push({"w": np.full((100, 8), near / 2)})  # dense: every row grows, rows 3 and 97 too far
        with pytest.raises(RequestError, match="to infinity"):
            client.flush()
        expected = np.zeros((100, 8), np.float32)
        expected[[3, 97]] = near
        np.testing.assert_array_equal(client.pull()["w"], expected)
        client.push({"w": np.full((100, 8), near / 2)}, scale=-1.0)  # away from the limit: applied
        np.testing.assert_array_equal(client.pull()["w"], expected - near / 2)


def test_a_server_refuses_parameters_that_are_not_finite(no_leftover_shm):
    bad = np.zeros((100, 8))
    bad[50, 2] = np.inf
    with pytest.raises(ValueError, match="'w' holds NaN or infinity"):
        ParameterServer({"b": np.zeros(3), "w": bad}, shards=2).start()
    with ParameterServer({"w": bad}, shards=2, check_finite=False) as ps:
        assert ps.params["w"][50, 2] == np.inf


def test_stats_count_pushes_pulls_and_bytes(start_server):
    ps = start_server({"w": np.zeros((1000, 10)), "b": np.zeros(3)}, shards=2)
    with Client(ps.address, sparsify=False) as client:
        for _ in range(5):
            client.push({"w": np.ones((1000, 10))})
        client.pull(["w"])
        stats = client.stats()
    assert [s["shard"] for s in stats] == [0, 1]
    assert [s["pushes"] for s in stats] == [5, 5]
    assert [s["pulls"] for s in stats] == [1, 1]
    assert all(s["bytes_in"] > 5 * 500 * 10 * 8 for s in stats)
    assert all(s["bytes_out"] > 500 * 10 * 8 for s in stats)
    assert all(s["errors"] == 0 for s in stats)


def test_pull_different_rows_of_each_parameter_in_one_request(start_server):
    params = make_params()
    ps = start_server(params, shards=2)
    with Client(ps.address) as client:
        before = [s["pulls"] for s in client.stats()]
        pulled = client.pull(rows={"w": np.array([999, 3]), "v": None, "b": np.array([6])})
        after = [s["pulls"] for s in client.stats()]
    assert set(pulled) == {"w", "v", "b"}
    np.testing.assert_array_equal(pulled["w"], params["w"][[999, 3]])
    np.testing.assert_array_equal(pulled["v"], params["v"])
    np.testing.assert_array_equal(pulled["b"], params["b"][[6]])
    assert [a - b for a, b in zip(after, before)] == [1, 1]  # one request per shard, not one per parameter


def test_a_pending_pull_reads_what_was_pushed_before_it_and_nothing_after(start_server):
    ps = start_server({"w": np.zeros((100, 8)), "b": np.zeros(3)}, shards=2)
    with Client(ps.address, window=1) as client:  # window 1: each push waits for the reply before it
        client.push({"w": np.ones((100, 8)), "b": np.ones(3)})
        pending = client.pull_async(rows={"w": np.array([0, 99])})  # reads both shards of w, not b's shard
        client.push({"w": np.ones((100, 8))})  # waits for the pull's replies, which are kept for result()
        client.push({"w": np.ones((100, 8))})
        client.flush()
        np.testing.assert_array_equal(pending.result()["w"], 1)
        assert pending.result() is pending.result()
        np.testing.assert_array_equal(client.pull(["w"])["w"], 3)


def test_a_rejected_push_before_a_pending_pull_is_raised_by_its_result(start_server):
    ps = start_server({"w": np.zeros((100, 8)), "b": np.zeros(3)}, shards=2)
    with Client(ps.address) as client:
        client.push({"b": np.array([np.inf, 0, 0])})  # rejected by b's shard
        pending = client.pull_async(rows={"w": np.array([0])})  # a pull that does not read b's shard
        with pytest.raises(RequestError, match="NaN or infinity"):
            pending.result()
        np.testing.assert_array_equal(client.pull()["b"], 0)


def half(values) -> np.ndarray:
    """float32 values rounded to float16 and back: what the half-precision wire carries of them."""
    return np.asarray(values, np.float32).astype(np.float16).astype(np.float32)


@pytest.mark.parametrize("shards", [1, 2, 3])
def test_the_half_precision_wire_carries_float32_values_as_float16(start_server, shards):
    """wire_dtype='float16': a float32 parameter's pushes arrive rounded to float16 and are added in float32;
    its pulls return float32 arrays of the values rounded to float16; a float64 parameter is untouched."""
    params = make_params()  # 'v' is float32 of shape (1000, 4, 3); 'w' and 'b' float64
    expected = {name: array.copy() for name, array in params.items()}
    ps = start_server(params, shards=shards)
    rng = np.random.default_rng(2)
    with Client(ps.address, wire_dtype="float16") as client:
        pulled = client.pull()
        assert {name: array.dtype for name, array in pulled.items()} == {name: a.dtype for name, a in params.items()}
        np.testing.assert_array_equal(pulled["v"], half(expected["v"]))
        np.testing.assert_array_equal(pulled["w"], expected["w"])
        rows = np.array([999, 3, 3, 0, 500])  # unsorted and repeated: cut by owner, put back in order
        np.testing.assert_array_equal(client.pull(["v"], rows=rows)["v"], half(expected["v"][rows]))

        dense = rng.standard_normal((1000, 4, 3)).astype(np.float32)
        client.push({"v": dense}, scale=-0.5)
        expected["v"] += np.float32(-0.5) * half(dense)
        mostly_zero = np.zeros((1000, 4, 3), np.float32)
        mostly_zero[[7, 600]] = rng.standard_normal((2, 4, 3))
        client.push({"v": mostly_zero})  # travels as two rows of float16
        expected["v"] += half(mostly_zero)
        values = rng.standard_normal((5, 4, 3)).astype(np.float32)
        client.push({"v": (rows, values), "w": (rows, np.full((5, 16), 0.1))})
        for row, value in zip(rows, half(values)):  # one at a time, as the shards add repeated rows
            expected["v"][row] += value
        np.add.at(expected["w"], rows, np.full((5, 16), 0.1))  # float64: exactly 0.1, not float16's 0.0999755859375
        client.flush()
    for name in params:
        np.testing.assert_array_equal(ps.params[name], expected[name], err_msg=name)


def test_the_half_precision_wire_halves_the_bytes_and_refuses_what_float16_cannot_hold(start_server):
    ps = start_server({"v": np.ones((4096, 64), np.float32)}, shards=2)
    rows = np.arange(0, 4096, 4)
    traffic = {}
    for wire in (None, "float16"):
        with Client(ps.address, wire_dtype=wire) as client:
            client.pull(["v"], rows=rows)
            client.push({"v": (rows, np.ones((len(rows), 64), np.float32))})
            client.flush()
            traffic[wire] = client.bytes_sent + client.bytes_received
    values_bytes = 2 * len(rows) * 64 * 4  # pulled and pushed, in float32
    assert traffic[None] - traffic["float16"] == values_bytes // 2
    with Client(ps.address, wire_dtype="float16") as client:
        too_large = np.ones((2, 64), np.float32)
        too_large[1, 5] = 70000.0  # beyond float16's largest, 65504
        with pytest.raises(ValueError, match="do not fit float16"):
            client.push({"v": (np.array([1, 2]), too_large)})
        with pytest.raises(ValueError, match="do not fit float16"):
            client.push({"v": np.full((4096, 64), -1e5, np.float32)})
        # Only the two earlier clients' pushes, one to each shard: nothing of the refused ones was sent.
        assert [shard["pushes"] for shard in client.stats()] == [2, 2]
        ps.params["v"][3] = 1e5
        with pytest.raises(RequestError, match="float16 cannot carry"):
            client.pull(["v"], rows=np.array([3]))
    # The refused pushes wrote nothing; each earlier client added 1 to rows 0, 4, 8, ...
    assert ps.params["v"][:3].tolist() == [[3.0] * 64, [1.0] * 64, [1.0] * 64]
    with pytest.raises(ValueError, match="wire_dtype must be None"):
        Client(ps.address, wire_dtype="bfloat16")


def test_a_push_too_large_for_one_shard_is_sent_to_none(start_server):
    """The frame limit is checked for every shard's part before any is sent: a push that would be refused is
    not half-applied, so pushing it again in smaller pieces (as the error says) adds it once."""
    ps = start_server({"w": np.zeros((20_000, 4))}, shards=2)
    small = dataclasses.replace(ps.address, max_message_bytes=10_000)  # shard 1's part below needs 12,800 bytes
    rows = np.array([0] * 10 + [19_999] * 400)
    with Client(small) as client:
        with pytest.raises(ValueError, match="a frame of 12800 bytes exceeds the server's limit of 10000 bytes"):
            client.push({"w": (rows, np.ones((410, 4)))})
        client.flush()
        np.testing.assert_array_equal(client.pull()["w"], 0)  # shard 0 was not sent its small part either
        for part in np.array_split(np.arange(len(rows)), 4):
            client.push({"w": (rows[part], np.ones((len(part), 4)))})
        pulled = client.pull()["w"]
    assert pulled[0].tolist() == [10.0] * 4 and pulled[19_999].tolist() == [400.0] * 4
    assert pulled.sum() == 410 * 4


def test_a_scale_beyond_the_parameters_dtype_is_refused(start_server, zmq_socket, recv):
    ps = start_server({"w": np.zeros((100, 4), np.float32)}, shards=2)
    with Client(ps.address) as client:
        with pytest.raises(ValueError, match="scale 4e[+]38 is beyond the range of float32, the dtype of 'w'"):
            client.push({"w": np.zeros((100, 4), np.float32)}, scale=4e38)
    # A raw peer: float32 would round the scale to infinity, and 0 x infinity is NaN. Refused, nothing written.
    socket = zmq_socket()
    socket.connect(ps.address.endpoints[0])
    header = P.encode_request(P.OP_PUSH, ps.address.server_id, 7, 1,
                              [P.Item(0, P.KIND_ROWS, 1, 1)], scale=4e38)
    socket.send_multipart([header, np.array([3], np.int64), np.zeros((1, 4), np.float32)])
    reply, message = recv(socket)
    assert P.decode_reply(reply).error == P.ERR_NONFINITE
    assert b"scale 4e+38 is beyond the range of float32" in message
    assert not np.isnan(ps.params["w"]).any() and not ps.params["w"].any()


def test_a_failed_pull_raises_again_and_its_other_answers_are_let_go(start_server):
    ps = start_server({"w": np.zeros((20_000, 8), np.float32)}, shards=2)
    assert [shard for shard, _, _ in ps.address.params[0].ranges] == [0, 1]
    ps.params["w"][0] = 1e6  # float16 cannot carry it: shard 0 refuses the pull, shard 1 answers it
    with Client(ps.address, wire_dtype="float16") as client:
        pending = client.pull_async()
        for _ in range(2):  # never a result assembled from shard 1's half alone
            with pytest.raises(RequestError, match="float16 cannot carry"):
                pending.result()
        for _ in range(3):
            with pytest.raises(RequestError, match="float16 cannot carry"):
                client.pull()
        np.testing.assert_array_equal(client.pull(rows=np.arange(10_000, 20_000))["w"], 0)  # shard 1's replies
        assert not client.unclaimed and not client.abandoned  # shard 1's answers to the failed pulls: dropped


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback on this host")
@pytest.mark.parametrize("host, advertise", [("::1", None), ("::", "::1"), ("::", "127.0.0.1")])
def test_shards_listen_and_clients_dial_over_ipv6(start_server, host, advertise):
    ps = start_server({"w": np.zeros((20_000, 4))}, shards=2, host=host, advertise=advertise)
    dialled = advertise or host
    assert all(e.startswith(f"tcp://[{dialled}]:" if ":" in dialled else f"tcp://{dialled}:")
               for e in ps.address.endpoints)  # IPv6 literals in brackets, as ZeroMQ wants them
    with Client(ps.address, timeout=10) as client:
        client.push({"w": (np.array([0, 19_999]), np.ones((2, 4)))})
        pulled = client.pull()["w"]
    assert pulled[[0, 19_999]].tolist() == [[1.0] * 4] * 2 and pulled.sum() == 8  # both shards reached


@pytest.mark.parametrize("window", [0, -1, 501, True, 2.0])
def test_a_window_past_what_zeromq_queues_is_refused(start_server, window):
    ps = start_server({"w": np.zeros((100, 8))}, shards=1)
    with pytest.raises(ValueError, match="window must be a whole number from 1 to 500"):
        Client(ps.address, window=window)


def test_more_pulls_in_flight_than_zeromq_queues_all_come_back(start_server):
    """A shard's ROUTER drops replies to a peer past its high-water mark (1,000 messages) without a word: the
    client keeps at most window (up to 500) requests in flight, and holds the answers it read early."""
    values = np.arange(128 * 128, dtype=np.float32).reshape(128, 128)  # 64 KiB
    ps = start_server({"w": values}, shards=1)
    with Client(ps.address, window=500, timeout=30) as client:
        pending = [client.pull_async() for _ in range(1500)]
        for pull in pending:
            np.testing.assert_array_equal(pull.result()["w"], values)


def test_a_client_in_use_by_another_thread_says_so(start_server):
    import threading

    ps = start_server({"w": np.zeros((100, 8))}, shards=2)
    with Client(ps.address) as client:
        errors = []

        def use():
            try:
                client.push({"w": np.ones((100, 8))})
            except RuntimeError as error:
                errors.append(error)

        with client.in_use:  # as if this thread were inside one of the client's calls
            thread = threading.Thread(target=use)
            thread.start()
            thread.join(10)
        assert len(errors) == 1 and "in use by another thread" in str(errors[0])
        client.push({"w": np.ones((100, 8))})  # its own thread, after: fine
        assert client.pull()["w"].sum() == 800


def test_a_client_used_in_a_forked_child_says_so_instead_of_hanging(start_server):
    import time

    ps = start_server({"w": np.zeros((100, 8))}, shards=1)
    with Client(ps.address, timeout=5) as client:
        client.push({"w": np.ones((100, 8))})
        pid = os.fork()
        if pid == 0:  # the child: exit at once either way, without pytest's or ZeroMQ's exit handlers
            try:
                client.pull()
            except RuntimeError as error:
                os._exit(0 if "made in another process" in str(error) else 2)
            os._exit(3)
        deadline = time.monotonic() + 30
        while (status := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        if status[0] == 0:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        assert status[0] == pid and os.waitstatus_to_exitcode(status[1]) == 0
        assert client.pull()["w"].sum() == 800  # the parent's client is untouched


def test_a_client_dropped_in_a_reference_cycle_after_a_failed_pull_is_collected(tmp_path):
    """The failed pull's error holds its traceback, whose frames hold the client: a cycle that only the
    collector frees. It used to finalize the ZeroMQ context before the sockets, and hang in term()."""
    import subprocess
    import sys

    script = tmp_path / "drop.py"
    script.write_text(
        "import gc, numpy as np\n"
        "from deepdist import Client, ParameterServer, RequestError\n"
        "with ParameterServer({'w': np.full((100, 8), 1e6, np.float32)}, shards=1) as ps:\n"
        "    client = Client(ps.address, wire_dtype='float16', timeout=5)\n"
        "    pending = client.pull_async()\n"
        "    try:\n"
        "        pending.result()\n"
        "    except RequestError as error:\n"
        "        caught = error\n"
        "    pending.again = pending  # a cycle, whatever the traceback holds\n"
        "    del client, pending, caught\n"
        "    gc.collect()\n"
        "print('collected')\n")
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([repo] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0 and "collected" in result.stdout, result.stderr[-3000:]
