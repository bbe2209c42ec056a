"""Push and pull throughput and small-push latency: deepdist against raw pyzmq moving the same bytes.

The baseline is the physical limit of the transport on this machine: DEALER clients sending the same frames
(`copy=False`, the same pipelining window) to ROUTER processes that acknowledge without touching the data, or
that answer a pull with a ready-made buffer. deepdist's figures include everything it does on top: cutting the
update by owner, validating every frame, the finite check, applying the update to shared memory, copying
pulled rows. Throughput is GB/s of parameter values applied (push) or returned (pull).

    python bench/transport.py                 # full run, about two minutes
    python bench/transport.py --quick         # smaller sizes and counts, for a smoke test
"""
import argparse
import multiprocessing
import sys
import time
from pathlib import Path

import numpy as np
import zmq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import add_common_args, machine_info, print_table, summary, timings, write_json  # noqa: E402

from deepdist import Client, ParameterServer  # noqa: E402

DIM = 128            # float32 values per row: 512-byte rows
WINDOW = 32          # unacknowledged messages per shard, for deepdist and the baseline alike
MB = 1 << 20
ACK = b"\0" * 24     # the size of a deepdist reply header


def raw_server(ready, port_out, pull_bytes):
    """A ROUTER that acknowledges every message, or answers with ``pull_bytes`` ready-made bytes."""
    context = zmq.Context()
    socket = context.socket(zmq.ROUTER)
    socket.linger = 0
    port_out.put(socket.bind_to_random_port("tcp://127.0.0.1"))
    answer = np.ones(pull_bytes // 4, np.float32) if pull_bytes else None
    ready.set()
    while True:
        frames = socket.recv_multipart(copy=False)
        if bytes(frames[1].buffer[:4]) == b"STOP":
            break
        reply = [frames[0], ACK] + ([answer] if answer is not None else [])
        socket.send_multipart(reply, copy=False)
    socket.close()
    context.term()


class RawServers:
    """``n`` raw ROUTER processes; ``sockets`` are connected DEALERs, one per server."""

    def __init__(self, n, pull_bytes=0):
        context = multiprocessing.get_context("spawn")
        self.processes, ports = [], context.Queue()
        ready = [context.Event() for _ in range(n)]
        for i in range(n):
            process = context.Process(target=raw_server, args=(ready[i], ports, pull_bytes), daemon=True)
            process.start()
            self.processes.append(process)
        for event in ready:
            if not event.wait(30):
                raise RuntimeError("raw server did not start")
        self.context = zmq.Context()
        self.sockets = []
        for _ in range(n):
            socket = self.context.socket(zmq.DEALER)
            socket.linger = 0
            socket.connect(f"tcp://127.0.0.1:{ports.get(timeout=10)}")
            self.sockets.append(socket)

    def send_all(self, messages, count):
        """Send ``count`` rounds of one message per server, at most WINDOW unanswered per server."""
        outstanding = [0] * len(self.sockets)
        for _ in range(count):
            for i, socket in enumerate(self.sockets):
                if outstanding[i] == WINDOW:
                    receive(socket)
                    outstanding[i] -= 1
                socket.send_multipart(messages[i], copy=False)
                outstanding[i] += 1
        for i, socket in enumerate(self.sockets):
            for _ in range(outstanding[i]):
                receive(socket)

    def close(self):
        for socket in self.sockets:
            socket.send_multipart([b"STOP"])
        for process in self.processes:
            process.join(10)
            if process.is_alive():
                process.kill()
        for socket in self.sockets:
            socket.close()
        self.context.term()


def receive(socket, timeout_s=30):
    if not socket.poll(timeout_s * 1000):
        raise TimeoutError("benchmark peer did not answer")
    return socket.recv_multipart(copy=False)


def push_case(update_bytes, sparse, shards, repeat, budget_bytes):
    """deepdist push GB/s and raw pyzmq GB/s for one update size; sparse updates touch 1% of the rows."""
    rows_in_update = update_bytes // (DIM * 4)
    n_rows = rows_in_update * (100 if sparse else 1)
    count = max(8, budget_bytes // update_bytes)
    rng = np.random.default_rng(0)
    values = rng.standard_normal((rows_in_update, DIM)).astype(np.float32)
    rows = np.sort(rng.choice(n_rows, rows_in_update, replace=False))
    update = {"w": (rows, values) if sparse else values}
    # The raw baseline sends the same frames per shard: a header, then (rows and) values, cut as deepdist cuts.
    parts = np.array_split(np.arange(rows_in_update), shards)
    messages = [[b"\0" * 56] + ([rows[p]] if sparse else []) + [values[p]] for p in parts]

    with ParameterServer({"w": np.zeros((n_rows, DIM), np.float32)}, shards=shards) as ps:
        with Client(ps.address, window=WINDOW) as client:
            raw = RawServers(shards)
            try:
                def run_deepdist():
                    for _ in range(count):
                        client.push(update)
                    client.flush()
                times = timings({"deepdist": run_deepdist, "raw": lambda: raw.send_all(messages, count)}, repeat)
            finally:
                raw.close()
    moved = count * values.nbytes
    return moved / summary(times["deepdist"])["median_s"] / 1e9, moved / summary(times["raw"])["median_s"] / 1e9, count


def pull_case(update_bytes, sparse, shards, repeat, budget_bytes):
    """deepdist pull GB/s (whole parameter, or 1% of its rows) and raw pyzmq GB/s for the same bytes."""
    rows_in_pull = update_bytes // (DIM * 4)
    n_rows = rows_in_pull * (100 if sparse else 1)
    count = max(4, budget_bytes // update_bytes)
    rng = np.random.default_rng(0)
    rows = np.sort(rng.choice(n_rows, rows_in_pull, replace=False)) if sparse else None
    params = {"w": rng.standard_normal((n_rows, DIM)).astype(np.float32)}
    with ParameterServer(params, shards=shards) as ps:
        with Client(ps.address, window=WINDOW) as client:
            raw = RawServers(shards, pull_bytes=update_bytes // shards)
            try:
                def run_deepdist():
                    for _ in range(count):
                        client.pull(["w"], rows=rows)

                def run_raw():  # like a pull: ask every shard, then wait for every answer
                    for _ in range(count):
                        for socket in raw.sockets:
                            socket.send_multipart([b"\0" * 56])
                        for socket in raw.sockets:
                            receive(socket)
                times = timings({"deepdist": run_deepdist, "raw": run_raw}, repeat)
            finally:
                raw.close()
    moved = count * rows_in_pull * DIM * 4
    return moved / summary(times["deepdist"])["median_s"] / 1e9, moved / summary(times["raw"])["median_s"] / 1e9, count


def latency_case(repeat, count):
    """Microseconds for one small push (one 512-byte row) made and acknowledged, against a raw round trip."""
    with ParameterServer({"w": np.zeros((1000, DIM), np.float32)}, shards=1) as ps:
        with Client(ps.address) as client:
            raw = RawServers(1)
            try:
                update = {"w": (np.array([7]), np.ones((1, DIM), np.float32))}
                message = [b"\0" * 56, np.array([7], np.int64), np.ones((1, DIM), np.float32)]

                def run_deepdist():
                    for _ in range(count):
                        client.push(update)
                        client.flush()

                def run_raw():
                    for _ in range(count):
                        raw.sockets[0].send_multipart(message, copy=False)
                        receive(raw.sockets[0])
                times = timings({"deepdist": run_deepdist, "raw": run_raw}, repeat)
            finally:
                raw.close()
    return (summary(times["deepdist"])["median_s"] / count * 1e6, summary(times["raw"])["median_s"] / count * 1e6)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser, "bench/results/transport.json")
    parser.add_argument("--quick", action="store_true", help="small sizes and counts (smoke test)")
    parser.set_defaults(repeat=5)
    args = parser.parse_args()
    budget = (16 if args.quick else 512) * MB  # bytes moved per timed run
    dense_sizes = [64 << 10, MB] if args.quick else [64 << 10, MB, 16 * MB]
    sparse_sizes = [MB] if args.quick else [MB, 8 * MB]

    results, rows = [], []
    for kind, case in (("push", push_case), ("pull", pull_case)):
        for shards in (1, 2):
            for sparse, sizes in ((False, dense_sizes), (True, sparse_sizes)):
                for size in sizes:
                    ours, base, count = case(size, sparse, shards, args.repeat, budget)
                    ratio = ours / base
                    goal = 0.8 if size >= MB else None
                    label = f"{kind} {'1%-sparse' if sparse else 'dense'} {size / MB:g} MB x{shards} shard"
                    results.append({"op": kind, "sparse": sparse, "update_bytes": size, "shards": shards,
                                    "messages": count, "deepdist_gbps": ours, "raw_pyzmq_gbps": base,
                                    "ratio": ratio, "goal": goal, "met": None if goal is None else ratio >= goal})
                    rows.append([label, f"{ours:.2f}", f"{base:.2f}", f"{ratio:.2f}x",
                                 f">= {goal}x" if goal else "-",
                                 "-" if goal is None else ("yes" if ratio >= goal else "NO")])
                    print(rows[-1], flush=True)
    ours_us, base_us = latency_case(args.repeat, 200 if args.quick else 2000)
    results.append({"op": "small push round trip", "deepdist_us": ours_us, "raw_pyzmq_us": base_us,
                    "ratio": ours_us / base_us})
    print()
    print_table(["case (GB/s of parameter values)", "deepdist", "raw pyzmq", "ratio", "goal", "met"], rows)
    print(f"\nsmall push (512 B row) made and acknowledged: deepdist {ours_us:.0f} us, "
          f"raw pyzmq round trip {base_us:.0f} us ({ours_us / base_us:.2f}x the time)")
    write_json(args.json, {"machine": machine_info(), "window": WINDOW, "row_bytes": DIM * 4,
                           "results": results})


if __name__ == "__main__":
    main()
