"""Push and pull throughput and small-push latency: deepdist against raw pyzmq moving the same bytes.

Two baselines run beside deepdist, in the same run:

- raw pyzmq, the physical limit of the transport on this machine: DEALER clients sending the same frames
  (`copy=False`, the same pipelining window) to ROUTER processes that acknowledge without touching the data,
  or that answer a pull with a ready-made buffer. The issue's 0.8x goal is against this one.
- raw pyzmq + numpy, the least a parameter server must do: the same ROUTER processes, but they also apply
  each push to an array with numpy (`np.add(dst, values, out=dst)`, or `dst[rows] += values` for sparse
  updates, whose rows here are unique) and answer each pull with fresh values (`part.copy()`, or
  `np.take(array, rows, axis=0)` with the rows the request carried). No validation, no finite check, no
  per-client sequence numbers.

deepdist's figures include everything it does: cutting the update by owner, validating every frame, the
finite check, applying the update to shared memory, copying pulled rows. Throughput is GB/s of parameter
values applied (push) or returned (pull).

    python bench/transport.py                 # full run, about seven minutes
    python bench/transport.py --quick         # smaller sizes and counts, for a smoke test
    python bench/transport.py --encrypt       # deepdist runs CURVE (encrypt=True); the baselines do not
    python bench/transport.py --wire-dtype float16   # deepdist's values travel as float16; the baselines
                                                     # still move the float32 bytes
"""
import argparse
import multiprocessing
import os
import statistics
import sys
from pathlib import Path

import numpy as np
import zmq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import add_common_args, machine_info, print_table, summary, timings, write_json  # noqa: E402

from deepdist import Client, ParameterServer  # noqa: E402
from deepdist.frames import recv_frames, send_frames  # noqa: E402

DIM = 128            # float32 values per row: 512-byte rows
WINDOW = 32          # unacknowledged messages per shard, for deepdist and the baseline alike
MB = 1 << 20
ACK = b"\0" * 24     # the size of a deepdist reply header


def raw_server(ready, port_out, pull_bytes, array_rows):
    """A ROUTER that acknowledges every message, or answers with ``pull_bytes`` ready-made bytes.

    With ``array_rows`` it is the numpy baseline: it holds an array of that many rows and applies each push
    to it, or answers each pull with a fresh copy of its rows. Sparse pushes and pulls carry their rows in
    a frame after the header, as deepdist's do.
    """
    context = zmq.Context()
    socket = context.socket(zmq.ROUTER)
    socket.linger = 0
    port_out.put(socket.bind_to_random_port("tcp://127.0.0.1"))
    answer = np.ones(pull_bytes // 4, np.float32) if pull_bytes else None
    array = np.ones((array_rows, DIM), np.float32) if array_rows else None
    ready.set()
    while True:
        frames = recv_frames(socket)  # as deepdist's shards receive (pyzmq's recv_multipart costs more)
        if bytes(frames[1].buffer[:4]) == b"STOP":
            break
        if array is not None and answer is not None:  # numpy pull
            answer = (array.copy() if len(frames) == 2
                      else np.take(array, np.frombuffer(frames[2].buffer, np.int64), axis=0))
        elif array is not None:  # numpy push: [identity, header, (rows), values]
            values = np.frombuffer(frames[-1].buffer, np.float32).reshape(-1, DIM)
            if len(frames) == 4:
                array[np.frombuffer(frames[2].buffer, np.int64)] += values
            else:
                np.add(array, values, out=array)
        reply = [frames[0], ACK] + ([answer] if answer is not None else [])
        send_frames(socket, reply)
    socket.close()
    context.term()


class RawServers:
    """``n`` raw ROUTER processes; ``sockets`` are connected DEALERs, one per server.

    ``array_rows`` (one entry per server) makes them the numpy baseline; see ``raw_server``.
    """

    def __init__(self, n, pull_bytes=0, array_rows=None):
        context = multiprocessing.get_context("spawn")
        self.processes, ports = [], [context.Queue() for _ in range(n)]
        ready = [context.Event() for _ in range(n)]
        for i in range(n):
            args = (ready[i], ports[i], pull_bytes, array_rows[i] if array_rows else 0)
            process = context.Process(target=raw_server, args=args, daemon=True)
            process.start()
            self.processes.append(process)
        for event in ready:
            if not event.wait(30):
                raise RuntimeError("raw server did not start")
        self.context = zmq.Context()
        self.sockets = []
        for i in range(n):
            socket = self.context.socket(zmq.DEALER)
            socket.linger = 0
            socket.rcvtimeo = socket.sndtimeo = 30_000  # receive() blocks under it, as deepdist's client does
            socket.connect(f"tcp://127.0.0.1:{ports[i].get(timeout=10)}")
            self.sockets.append(socket)

    def send_all(self, messages, count):
        """Send ``count`` rounds of one message per server, at most WINDOW unanswered per server."""
        outstanding = [0] * len(self.sockets)
        for _ in range(count):
            for i, socket in enumerate(self.sockets):
                if outstanding[i] == WINDOW:
                    receive(socket)
                    outstanding[i] -= 1
                send_frames(socket, messages[i])
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


def receive(socket):
    """One message, as deepdist's client receives one: a blocking receive under the socket's timeout."""
    try:
        return recv_frames(socket)
    except zmq.Again:
        raise TimeoutError("benchmark peer did not answer") from None


def speeds(moved, times, cpu):
    """Median GB/s of each system, deepdist's ratios to the baselines, and where each system's CPU went.

    A ratio is the median of per-round ratios: ``timings`` runs the three one after another in each round,
    so a round's ratio compares runs well under a second apart, and load that drifts more slowly cancels out.

    ``cpu`` is ``timings``' CPU per thread. For each system: its mean wall and CPU seconds per run (all
    threads), its busiest thread and that thread's CPU seconds per run, and every thread's, busiest first.
    ``busiest_thread_ratio`` is raw pyzmq's busiest thread over deepdist's: the ratio if every thread had a
    core of its own and each system then ran at the pace of its busiest thread. On a machine with fewer cores
    than busy threads the wall-time ratio also measures how the threads share the cores; this one does not.
    """
    result = {name: moved / summary(runs)["median_s"] / 1e9 for name, runs in times.items()}
    for key, baseline in (("ratio", "raw"), ("ratio_to_numpy", "numpy")):
        result[key] = statistics.median(b / d for d, b in zip(times["deepdist"], times[baseline]))
    result["cpu"] = {}
    for name, threads in cpu.items():
        busiest = max(threads, key=threads.get)
        result["cpu"][name] = {"wall_s": statistics.fmean(times[name]), "cpu_s": sum(threads.values()),
                               "busiest_thread": busiest, "busiest_thread_s": threads[busiest],
                               "threads": dict(sorted(threads.items(), key=lambda item: -item[1]))}
    busiest = {name: usage["busiest_thread_s"] for name, usage in result["cpu"].items()}
    result["busiest_thread_ratio"] = busiest["raw"] / busiest["deepdist"]
    return result


def push_case(update_bytes, sparse, shards, repeat, budget_bytes, wire_dtype=None, encrypt=False):
    """GB/s pushed through deepdist and both baselines, for one update size; sparse updates touch 1% of the
    rows."""
    rows_in_update = update_bytes // (DIM * 4)
    n_rows = rows_in_update * (100 if sparse else 1)
    count = max(8, budget_bytes // update_bytes)
    rng = np.random.default_rng(0)
    values = rng.standard_normal((rows_in_update, DIM)).astype(np.float32)
    rows = np.sort(rng.choice(n_rows, rows_in_update, replace=False))
    update = {"w": (rows, values) if sparse else values}
    # The baselines get the same frames per shard: a header, then (rows and) values, cut as deepdist cuts.
    parts = np.array_split(np.arange(rows_in_update), shards)
    messages = [[b"\0" * 56] + ([rows[p]] if sparse else []) + [values[p]] for p in parts]
    array_rows = [n_rows] * shards if sparse else [len(p) for p in parts]

    with ParameterServer({"w": np.zeros((n_rows, DIM), np.float32)}, shards=shards, encrypt=encrypt) as ps:
        with Client(ps.address, window=WINDOW, wire_dtype=wire_dtype) as client:
            raw, with_numpy = RawServers(shards), RawServers(shards, array_rows=array_rows)
            try:
                def run_deepdist():
                    for _ in range(count):
                        client.push(update)
                    client.flush()
                cpu = {}
                times = timings({"deepdist": run_deepdist, "raw": lambda: raw.send_all(messages, count),
                                 "numpy": lambda: with_numpy.send_all(messages, count)}, repeat, cpu)
            finally:
                raw.close()
                with_numpy.close()
    return speeds(count * values.nbytes, times, cpu), count


def pull_case(update_bytes, sparse, shards, repeat, budget_bytes, wire_dtype=None, encrypt=False):
    """GB/s pulled through deepdist and both baselines (the whole parameter, or 1% of its rows)."""
    rows_in_pull = update_bytes // (DIM * 4)
    n_rows = rows_in_pull * (100 if sparse else 1)
    count = max(4, budget_bytes // update_bytes)
    rng = np.random.default_rng(0)
    rows = np.sort(rng.choice(n_rows, rows_in_pull, replace=False)) if sparse else None
    params = {"w": rng.standard_normal((n_rows, DIM)).astype(np.float32)}
    # The baselines' requests: a header, and for a sparse pull that server's part of the rows (as deepdist's
    # carry them); the numpy servers then hold the whole array and answer with the rows asked for.
    if sparse:
        array_rows = [n_rows] * shards
        requests = [[b"\0" * 56, part] for part in np.array_split(rows.astype(np.int64), shards)]
    else:
        array_rows = [len(p) for p in np.array_split(np.arange(n_rows), shards)]
        requests = [[b"\0" * 56]] * shards
    with ParameterServer(params, shards=shards, encrypt=encrypt) as ps:
        with Client(ps.address, window=WINDOW, wire_dtype=wire_dtype) as client:
            raw = RawServers(shards, pull_bytes=update_bytes // shards)
            with_numpy = RawServers(shards, pull_bytes=update_bytes // shards, array_rows=array_rows)
            try:
                def run_deepdist():
                    for _ in range(count):
                        client.pull(["w"], rows=rows)

                def asker(servers):
                    def run():  # like a pull: ask every shard, then wait for every answer
                        for _ in range(count):
                            for socket, request in zip(servers.sockets, requests):
                                send_frames(socket, request)
                            for socket in servers.sockets:
                                receive(socket)
                    return run
                cpu = {}
                times = timings({"deepdist": run_deepdist, "raw": asker(raw), "numpy": asker(with_numpy)},
                                repeat, cpu)
            finally:
                raw.close()
                with_numpy.close()
    return speeds(count * rows_in_pull * DIM * 4, times, cpu), count


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
                        send_frames(raw.sockets[0], message)
                        receive(raw.sockets[0])
                times = timings({"deepdist": run_deepdist, "raw": run_raw}, repeat)
            finally:
                raw.close()
    return (summary(times["deepdist"])["median_s"] / count * 1e6, summary(times["raw"])["median_s"] / count * 1e6)


def cpu_cells(usage):
    """Cores busy, busiest thread (its role and name, without pids) and its CPU ms, for one system's run."""
    role, rest = usage["busiest_thread"].split(" ", 1)
    name = rest.split("/", 1)[1].rsplit(" ", 1)[0]
    return [f"{usage['cpu_s'] / usage['wall_s']:.2f}", f"{role} {name}", f"{usage['busiest_thread_s'] * 1e3:.0f}"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser, "bench/results/transport.json")
    parser.add_argument("--quick", action="store_true", help="small sizes and counts (smoke test)")
    parser.add_argument("--wire-dtype", choices=("float16",), default=None,
                        help="deepdist's client sends and asks for float16 values (the half-precision wire); "
                             "GB/s still counts the float32 parameter values pushed or pulled")
    parser.add_argument("--encrypt", action="store_true",
                        help="deepdist's server and client run CURVE (encrypt=True); the baselines do not, so "
                             "the ratios are what encryption costs on top of deepdist's own work")
    parser.set_defaults(repeat=7)
    args = parser.parse_args()
    budget = (16 if args.quick else 512) * MB  # bytes moved per timed run
    dense_sizes = [64 << 10, MB] if args.quick else [64 << 10, MB, 16 * MB]
    sparse_sizes = [MB] if args.quick else [MB, 8 * MB]

    results, rows, cpu_rows = [], [], []
    for kind, case in (("push", push_case), ("pull", pull_case)):
        for shards in (1, 2):
            for sparse, sizes in ((False, dense_sizes), (True, sparse_sizes)):
                for size in sizes:
                    speed, count = case(size, sparse, shards, args.repeat, budget, args.wire_dtype, args.encrypt)
                    ratio, floor_ratio = speed["ratio"], speed["ratio_to_numpy"]
                    # Over the float16 wire deepdist moves half the bytes the baselines move: the same
                    # parameter values, not the same transport work; encrypted, it does more work than
                    # they do. In neither case is a goal judged.
                    goal = 0.8 if size >= MB and args.wire_dtype is None and not args.encrypt else None
                    label = (f"{kind} {'1%-sparse' if sparse else 'dense'} {size / MB:g} MB, "
                             f"{shards} shard{'s' * (shards > 1)}")
                    results.append({"op": kind, "sparse": sparse, "update_bytes": size, "shards": shards,
                                    "messages": count, "deepdist_gbps": speed["deepdist"],
                                    "raw_pyzmq_gbps": speed["raw"], "raw_pyzmq_numpy_gbps": speed["numpy"],
                                    "ratio": ratio, "ratio_to_numpy": floor_ratio, "goal": goal,
                                    "met": None if goal is None else ratio >= goal,
                                    "cpu": speed["cpu"], "busiest_thread_ratio": speed["busiest_thread_ratio"]})
                    cpu_rows.append([label] + [cell for name in ("deepdist", "raw", "numpy")
                                               for cell in cpu_cells(speed["cpu"][name])]
                                    + [f"{speed['busiest_thread_ratio']:.2f}x"])
                    rows.append([label, f"{speed['deepdist']:.2f}", f"{speed['raw']:.2f}", f"{ratio:.2f}x",
                                 f">= {goal}x" if goal else "-",
                                 "-" if goal is None else ("yes" if ratio >= goal else "NO"),
                                 f"{speed['numpy']:.2f}", f"{floor_ratio:.2f}x"])
                    print("  ".join(rows[-1]), flush=True)  # as each case ends; the table comes last
    ours_us, base_us = latency_case(args.repeat, 200 if args.quick else 2000)
    results.append({"op": "small push round trip", "deepdist_us": ours_us, "raw_pyzmq_us": base_us,
                    "ratio": ours_us / base_us})
    print()
    print_table(["case (GB/s of parameter values)", "deepdist", "raw pyzmq", "ratio", "goal", "met",
                 "raw pyzmq + numpy", "ratio"], rows)
    print(f"\nsmall push (512 B row) made and acknowledged: deepdist {ours_us:.0f} us, "
          f"raw pyzmq round trip {base_us:.0f} us ({ours_us / base_us:.2f}x the time)")
    print(f"\nWhere the CPU went, per timed run: cores busy on average (CPU seconds / wall seconds, all threads),"
          f"\nthe busiest thread and its CPU ms. The last column is raw pyzmq's busiest thread over deepdist's:"
          f"\nthe ratio if each thread had a core of its own (this machine has {os.cpu_count()}).\n")
    print_table(["case", "deepdist cores", "busiest thread", "ms", "raw cores", "busiest thread", "ms",
                 "numpy cores", "busiest thread", "ms", "busiest-thread ratio"], cpu_rows)
    write_json(args.json, {"machine": machine_info(), "window": WINDOW, "row_bytes": DIM * 4,
                           "wire_dtype": args.wire_dtype, "encrypt": args.encrypt, "results": results})


if __name__ == "__main__":
    main()
