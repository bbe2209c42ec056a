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


def timings(fns, repeat):
    """{name: [seconds of each of `repeat` calls]} for a dict of callables, after one
    untimed warm-up call of each.

    The calls are interleaved (a, b, c, a, b, c, ...) so that load from other
    processes, which drifts over seconds, falls on all of them alike.
    """
    for fn in fns.values():
        fn()
    times = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


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
