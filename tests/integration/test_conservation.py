"""Exact conservation: many concurrent clients, thousands of pushes, not one update lost or applied twice."""
import multiprocessing

import numpy as np

from deepdist import Client

WORKERS = 8
PUSHES = 1000
ROWS, DIM = 3000, 8
JOIN_TIMEOUT = 240.0  # seconds for all workers together: a hang fails, it never blocks the suite


def updates(worker: int):
    """The pushes worker ``worker`` makes: small integers, so every sum is exact, in float64 and in float32
    (whose values half the workers send as float16, which holds such integers exactly too)."""
    rng = np.random.default_rng(1000 + worker)
    for step in range(PUSHES):
        if step % 10 == 0:  # dense, over every parameter, some steps scaled
            yield {"w": rng.integers(-4, 5, (ROWS, DIM)).astype(np.float64),
                   "b": rng.integers(-4, 5, 16).astype(np.float64),
                   "h": rng.integers(-4, 5, (ROWS, DIM)).astype(np.float32)}, (-2.0 if step % 20 == 0 else 1.0)
        else:               # sparse rows, with repeats, across both shards' ranges
            rows = rng.integers(0, ROWS, 40)
            rows[:10] = rows[0]
            yield {"w": (rows, rng.integers(-4, 5, (40, DIM)).astype(np.float64)),
                   "h": (rows, rng.integers(-4, 5, (40, DIM)).astype(np.float32))}, 1.0


def worker(address, index, results):
    try:
        with Client(address, timeout=60.0, window=8, wire_dtype="float16" if index % 2 else None) as client:
            for update, scale in updates(index):
                client.push(update, scale=scale)
        results.put((index, "ok"))
    except BaseException as error:  # reported to the parent, which fails the test with it
        results.put((index, repr(error)))


def expected_sums():
    total = {"w": np.zeros((ROWS, DIM)), "b": np.zeros(16), "h": np.zeros((ROWS, DIM))}
    for index in range(WORKERS):
        for update, scale in updates(index):
            for name, value in update.items():
                if isinstance(value, tuple):
                    np.add.at(total[name], value[0], scale * value[1])
                else:
                    total[name] += scale * value
    return total


def test_concurrent_clients_conserve_every_update(start_server):
    start = {"w": np.full((ROWS, DIM), 7.0), "b": np.full(16, -1.0), "h": np.full((ROWS, DIM), 3, np.float32)}
    ps = start_server({name: array.copy() for name, array in start.items()}, shards=2)
    assert {shard for shard, _, _ in ps.address.params[0].ranges} == {0, 1}  # 'w' is really cut

    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    processes = [context.Process(target=worker, args=(ps.address, i, results)) for i in range(WORKERS)]
    try:
        for process in processes:
            process.start()
        outcomes = dict(results.get(timeout=JOIN_TIMEOUT) for _ in processes)
        for process in processes:
            process.join(timeout=10)
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
    assert outcomes == {i: "ok" for i in range(WORKERS)}

    expected = expected_sums()
    with Client(ps.address) as client:
        final = client.pull()
        stats = client.stats()
    for name in start:
        np.testing.assert_array_equal(final[name], start[name] + expected[name], err_msg=name)
    assert sum(s["errors"] for s in stats) == 0
    assert sum(s["duplicates"] for s in stats) == 0
    assert sum(s["clients"] for s in stats) >= WORKERS
