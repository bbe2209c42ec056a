"""Helpers shared by the bench scripts: common flags, timing, a text table, JSON output."""
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np


def project_path(relative):
    """``relative`` (e.g. bench/results/x.json) inside the project, wherever a script is run from."""
    return Path(__file__).resolve().parent.parent / relative


def add_common_args(parser, default_json):
    parser.add_argument("--repeat", type=int, default=21,
                        help="timed runs per measurement, after one warm-up run (default: %(default)s)")
    parser.add_argument("--json", type=Path, default=project_path(default_json), metavar="PATH",
                        help="where to write the results as JSON (default: %(default)s)")


def timings(fns, repeat, cpu=None):
    """{name: [seconds of each of `repeat` calls]} for a dict of callables, after one
    untimed warm-up call of each.

    The calls are interleaved, each round starting one further on (a, b, c, b, c, a, c, a, b, ...), so
    that load from other processes, which drifts over seconds, falls on all of them alike, and none always
    runs first or right after the same other.

    With a dict ``cpu``, also fills ``cpu[name]`` with {thread: CPU seconds per call, averaged over the
    timed calls} for every thread of this process and its descendants that ran (``thread_clocks``).
    """
    for fn in fns.values():
        fn()
    pids = family() if cpu is not None else []  # after the warm-up: every server is running by then
    times = {name: [] for name in fns}
    used = {name: {} for name in fns}
    names = list(fns)
    for i in range(repeat):
        # Each round starts with the next one: none always runs first (or right after another's work).
        for name in names[i % len(names):] + names[:i % len(names)]:
            fn = fns[name]
            before = thread_clocks(pids) if cpu is not None else {}
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
            if cpu is not None:
                for thread, seconds in thread_clocks(pids).items():
                    ran = seconds - before.get(thread, 0.0)
                    if ran > 0:
                        used[name][thread] = used[name].get(thread, 0.0) + ran
    if cpu is not None:
        for name, threads in used.items():
            cpu[name] = {thread: seconds / repeat for thread, seconds in threads.items()}
    return times


def family():
    """This process's pid and its descendants' (servers, shards), from ``/proc``; empty where there is none."""
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended while we looked
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    pids, found = [os.getpid()], []
    while pids:
        found.append(pids.pop())
        pids.extend(children.get(found[-1], []))
    return found if children else []


def thread_clocks(pids):
    """{thread: seconds on a CPU so far} for every thread of the processes ``pids``, as the scheduler counts
    them (``/proc/PID/task/TID/schedstat``, in nanoseconds). A thread is named ``"<role> <pid>/<thread name>
    <tid>"``, the role ``bench`` for this process and ``child`` for the others, the name ``main`` for a
    process's main thread.

    Why: where busy threads outnumber the cores, wall time measures how they share the cores; each thread's
    own CPU time shows which one would set the pace if each had a core of its own.
    """
    clocks = {}
    for pid in pids:
        role = "bench" if pid == os.getpid() else "child"
        for task in Path(f"/proc/{pid}/task").glob("[0-9]*"):
            try:
                name = "main" if task.name == str(pid) else (task / "comm").read_text().strip()
                ns = int((task / "schedstat").read_text().split()[0])
            except (OSError, ValueError):  # the thread ended while we looked
                continue
            clocks[f"{role} {pid}/{name} {task.name}"] = ns / 1e9
    return clocks


def summary(times):
    return {"best_s": min(times), "median_s": statistics.median(times), "runs": len(times)}


def machine_info():
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }


def print_table(headers, rows):
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for n, row in enumerate(cells):
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
        if n == 0:
            print("  ".join("-" * w for w in widths))


def write_json(path, payload):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {path}")
