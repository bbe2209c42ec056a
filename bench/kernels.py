"""Throughput of the compiled kernels (deepdist._core) against the NumPy way of
doing the same work, with a plain memcpy (np.copyto) of the same bytes beside
each as the memory-bandwidth limit.

Rates are M rows/s for the row kernels and GB/s (1e9 bytes of parameters
written, or read for the scans) for the dense ones; on the half-precision wire
GB/s counts the float32 side (read by narrow, written by widen and axpy), so
that it compares with the float32 rows.  Each is the median of
--repeat timed runs after a warm-up run; the runs of deepdist, the baseline and
memcpy are interleaved, so that load from other processes hits them alike
(the JSON also has the best run of each).  The ratio is the median of the
per-round ratios.

Needs an importable, built deepdist: `pip install .`, or
`python setup.py build_ext --inplace` and then `PYTHONPATH=. python bench/kernels.py`.
"""
import argparse
import statistics

import numpy as np
from _common import add_common_args, machine_info, print_table, summary, timings, write_json

from deepdist import _core, _core_ref

ALPHA = -0.05
NONZERO_FRACTION = 0.1  # share of non-zero rows in the nonzero_rows input, as in a sparse gradient


def copier(nbytes):
    src = np.ones(nbytes, np.uint8)
    dst = np.zeros(nbytes, np.uint8)
    return lambda: np.copyto(dst, src)


def measure(name, unit, amount, ours, baseline_name, baseline, copy_bytes, goal, repeat):
    """Rates (amount / median seconds) of ours, baseline and a memcpy of copy_bytes.

    The ratio is the median over rounds of baseline time / our time: the runs
    are interleaved, so each pair saw about the same load from other processes.
    """
    runs = {"deepdist": ours, "baseline": baseline, "memcpy": copier(copy_bytes)}
    raw = timings(runs, repeat)
    times = {key: summary(t) for key, t in raw.items()}
    rates = {key: amount / t["median_s"] for key, t in times.items()}
    ratio = statistics.median(b / o for b, o in zip(raw["baseline"], raw["deepdist"]))
    return {
        "name": name,
        "unit": unit,
        "baseline_name": baseline_name,
        "rates": rates,
        "ratio": ratio,
        "goal": goal,
        "met": None if goal is None else ratio >= goal,
        "timings": times,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000, help="rows per row-kernel call (default: %(default)s)")
    parser.add_argument("--dim", type=int, default=100, help="floats per row (default: %(default)s)")
    parser.add_argument("--dense-mb", type=int, default=256, help="size of each dense array in MB (default: %(default)s)")
    add_common_args(parser, "bench/results/kernels.json")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    rows, dim, repeat = args.rows, args.dim, args.repeat
    mrows = rows / 1e6

    # Row kernels: float32 matrices of `rows` x `dim`, indices drawn with replacement,
    # so about a third of them repeat.
    table = np.zeros((rows, dim), np.float32)
    index = rng.integers(0, rows, rows)
    update = rng.standard_normal((rows, dim), dtype=np.float32)
    out = np.empty_like(update)
    update16 = update.astype(np.float16)  # the same update on the half-precision wire
    sparse = np.zeros((rows, dim), np.float32)
    live = rng.random(rows) < NONZERO_FRACTION
    sparse[live] = rng.standard_normal((int(live.sum()), dim), dtype=np.float32)

    # Dense kernels: two arrays of --dense-mb MB.
    n = args.dense_mb * 2**20 // 4
    a = np.zeros(n, np.float32)
    b = np.full(n, 0.5, np.float32)
    b16 = b.astype(np.float16)  # b on the half-precision wire
    scratch = np.empty_like(b)  # for numpy's alpha * b: allocated once, as deepdist allocates nothing
    gb = n * 4 / 1e9

    results = [
        measure("scatter_add", "M rows/s", mrows,
                lambda: _core.scatter_add(table, index, update),
                "np.add.at", lambda: np.add.at(table, index, update),
                update.nbytes, 10.0, repeat),
        measure("scatter_add", "M rows/s", mrows,
                lambda: _core.scatter_add(table, index, update),
                "_core_ref.scatter_add", lambda: _core_ref.scatter_add(table, index, update),
                update.nbytes, None, repeat),
        measure("scatter_add float16 src", "M rows/s", mrows,
                lambda: _core.scatter_add(table, index, update16),
                "float32 src", lambda: _core.scatter_add(table, index, update),
                update16.nbytes, None, repeat),
        measure("gather", "M rows/s", mrows,
                lambda: _core.gather(table, index, out),
                "np.take(out=)", lambda: np.take(table, index, axis=0, out=out),
                out.nbytes, None, repeat),
        measure(f"nonzero_rows ({NONZERO_FRACTION:.0%} non-zero)", "GB/s", sparse.nbytes / 1e9,
                lambda: _core.nonzero_rows(sparse),
                "flatnonzero(any(!=0))", lambda: np.flatnonzero(np.any(sparse != 0, axis=1)),
                sparse.nbytes, None, repeat),
        measure("axpy alpha=1", "GB/s", gb,
                lambda: _core.axpy(a, b),
                "a += b", lambda: np.add(a, b, out=a),
                a.nbytes, 1.0, repeat),
        measure(f"axpy alpha={ALPHA}", "GB/s", gb,
                lambda: _core.axpy(a, b, ALPHA),
                "a += alpha * b", lambda: np.add(a, np.multiply(b, ALPHA, out=scratch), out=a),
                a.nbytes, 1.0, repeat),
        measure("narrow float32->float16", "GB/s", gb,
                lambda: _core.narrow(b, b16),
                "np.copyto(unsafe)", lambda: np.copyto(b16, b, casting="unsafe"),
                b.nbytes, None, repeat),
        measure("widen float16->float32", "GB/s", gb,
                lambda: _core.widen(b16, a),
                "np.copyto", lambda: np.copyto(a, b16),
                a.nbytes, None, repeat),
        measure("axpy alpha=1 float16 src", "GB/s", gb,
                lambda: _core.axpy(a, b16),
                "a += b16", lambda: np.add(a, b16, out=a),
                a.nbytes, None, repeat),
        measure("max_abs", "GB/s", gb,
                lambda: _core.max_abs(b),
                "max(b.max(), -b.min())", lambda: max(b.max(), -b.min()),
                b.nbytes, None, repeat),
    ]

    print(f"rows={rows} dim={dim} float32, dense arrays {args.dense_mb} MB float32, "
          f"median of {repeat}; memcpy = np.copyto of the same bytes\n")
    print_table(
        ["kernel", "unit", "deepdist", "baseline", "vs", "ratio", "goal", "met", "memcpy"],
        [[r["name"], r["unit"], f"{r['rates']['deepdist']:.2f}", f"{r['rates']['baseline']:.2f}",
          r["baseline_name"], f"{r['ratio']:.2f}x", "-" if r["goal"] is None else f">={r['goal']:g}x",
          "-" if r["met"] is None else ("yes" if r["met"] else "NO"), f"{r['rates']['memcpy']:.2f}"]
         for r in results])
    write_json(args.json, {
        "machine": machine_info(),
        "config": {"rows": rows, "dim": dim, "dtype": "float32", "dense_mb": args.dense_mb,
                   "repeat": repeat, "alpha": ALPHA, "nonzero_fraction": NONZERO_FRACTION,
                   "core_module": _core.__file__},
        "results": results,
    })


if __name__ == "__main__":
    main()
