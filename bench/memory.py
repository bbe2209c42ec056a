"""Memory of the driver and of each shard process, beside the size of the parameters they serve.

A word2vec-shaped model (syn0 and syn1neg, ROWS x DIM float32 each) is served by 2 shards. One client pulls
and pushes word2vec-sized chunks of sparse rows, then one dense push and one dense pull of syn0, so every
shard has touched all of its rows and handled its largest messages. Figures come from /proc/PID/smaps_rollup
(Linux): Rss counts the shared parameters in every process that touched them, Pss shares them out, and
Private_Dirty is what a process holds of its own (interpreter, buffers).

Then what every Spark task holds whatever the parameters: the model DeepDist broadcasts, a gensim Word2Vec
without its arrays (the vocabulary as Python objects), in bytes per vocabulary word, pickled and unpickled
(traced with tracemalloc), for negative sampling and hierarchical softmax.

    python bench/memory.py                        # 2 x 1,000,000 x 100 float32: 800 MB of parameters
    python bench/memory.py --rows 250000 --dim 50 # smaller
    python bench/memory.py --corpus ../shared/corpus/dictionaries.txt.gz   # vocabulary of a larger corpus
"""
import argparse
import gc
import os
import pickle
import re
import sys
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, print_table, project_path, write_json  # noqa: E402

from deepdist import Client, ParameterServer  # noqa: E402

FIELDS = ("Rss", "Pss", "Shared_Dirty", "Private_Dirty")
CHUNK_ROWS = 2500  # distinct words in a 10,000-word chunk, about


def rollup(pid: int) -> dict:
    """MB of each field of /proc/PID/smaps_rollup."""
    text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    return {field: int(re.search(rf"^{field}:\s+(\d+) kB", text, re.M).group(1)) / 1024 for field in FIELDS}


def broadcast_model_bytes(sentences) -> list:
    """(settings, vocabulary, pickled B/word, unpickled B/word) of the model a task receives."""
    from gensim.models import Word2Vec

    from deepdist.models import param_names, strip

    out = []
    for label, settings in (("negative 5", {"negative": 5, "hs": 0}), ("hierarchical softmax", {"negative": 0, "hs": 1})):
        model = Word2Vec(vector_size=100, min_count=5, sg=1, **settings)
        model.build_vocab(sentences)
        blob = pickle.dumps(strip(model, param_names(model)))
        tracemalloc.start()
        shell = pickle.loads(blob)  # noqa: F841 (kept alive while measured)
        held = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        out.append((label, len(model.wv), len(blob) / len(model.wv), held / len(model.wv)))
    return out


def model_arrays(shape) -> dict:
    # Written, as a model's initial vectors are: untouched np.zeros pages would cost nothing and hide the
    # caller's own copy of the parameters.
    return {"syn0": np.full(shape, 0.01, np.float32), "syn1neg": np.full(shape, 0.01, np.float32)}


def serve(params, copy_back, args, measured, label) -> None:
    """Serve ``params`` with 2 shards and word2vec-like traffic; record each process's memory in ``measured``,
    and the driver's peak while the server starts and while it stops (the client's traffic in between runs in
    this process too, where a Spark task's would not)."""
    measured[f"driver, before the server ({label})"] = rollup(os.getpid())
    # As DeepDist serves a model it alone holds: moved in (pages given back as copied), moved out at the end.
    move_in = [] if copy_back else list(params)
    reset_peak()
    with ParameterServer(params, shards=2, copy_back=copy_back, move_in=move_in) as ps:
        if not copy_back:
            params.clear()  # as DeepDist does: the model points at shared memory now
            gc.collect()
        measured[f"driver, peak while the server starts ({label})"] = {"Rss": peak_rss_mb()}
        measured[f"driver, server started ({label})"] = rollup(os.getpid())
        pids = [process.pid for process in ps.processes]
        for shard, pid in enumerate(pids):
            measured[f"shard {shard}, idle ({label})"] = rollup(pid)
        rng = np.random.default_rng(0)
        with Client(ps.address) as client:
            for _ in range(args.chunks):
                rows = np.unique(rng.integers(0, args.rows, CHUNK_ROWS))
                client.pull(rows={"syn0": rows, "syn1neg": rows})
                ones = np.ones((len(rows), args.dim), np.float32)
                client.push({"syn0": (rows, ones), "syn1neg": (rows, ones)})
            dense = np.ones((args.rows, args.dim), np.float32)
            client.push({"syn0": dense})
            client.pull(["syn0"])
            del dense
        for shard, pid in enumerate(pids):
            measured[f"shard {shard}, after traffic ({label})"] = rollup(pid)
        gc.collect()
        reset_peak()
    measured[f"driver, peak while the block ends ({label})"] = {"Rss": peak_rss_mb()}
    measured[f"driver, after the block ({label})"] = rollup(os.getpid())


def peak_rss_mb() -> float:
    return int(re.search(r"^VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M).group(1)) / 1024


def reset_peak() -> None:
    """Start this process's VmHWM afresh from its current Rss (Linux 4.0 and later)."""
    Path("/proc/self/clear_refs").write_text("5")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of each parameter (default: %(default)s)")
    parser.add_argument("--dim", type=int, default=100, help="floats per row (default: %(default)s)")
    parser.add_argument("--chunks", type=int, default=200, help="sparse pull+push rounds (default: %(default)s)")
    parser.add_argument("--corpus", type=Path, default=None, metavar="PATH",
                        help="text corpus for the vocabulary (default: gensim's Wikipedia excerpt)")
    parser.add_argument("--json", type=Path, default=project_path("bench/results/memory.json"), metavar="PATH")
    args = parser.parse_args()

    shape = (args.rows, args.dim)
    param_mb = 2 * args.rows * args.dim * 4 / 2**20
    measured = {}
    # As DeepDist serves a model (copy_back=False and move_in: the caller hands its arrays over), then with
    # the arrays kept and copied back into, ParameterServer's default.
    serve(model_arrays(shape), False, args, measured, "DeepDist")
    serve(model_arrays(shape), True, args, measured, "copy_back=True")

    print(f"parameters: 2 x {args.rows:,} x {args.dim} float32 = {param_mb:,.0f} MB, 2 shards (MB)")
    print_table(("process",) + FIELDS, [(name,) + tuple(f"{values[f]:,.0f}" if f in values else "" for f in FIELDS)
                                        for name, values in measured.items()])
    from deepdist.word2vec import read_sentences, wikipedia_sentences

    sentences = list(read_sentences(args.corpus)) if args.corpus else wikipedia_sentences()
    vocab = broadcast_model_bytes(sentences)
    print(f"\nthe model each task receives (vocabulary of {args.corpus or 'the Wikipedia excerpt'})")
    print_table(("settings", "vocabulary", "pickled B/word", "unpickled B/word"),
                [(label, f"{n:,}", f"{pickled:.0f}", f"{held:.0f}") for label, n, pickled, held in vocab])
    write_json(args.json, {"machine": machine_info(), "rows": args.rows, "dim": args.dim, "shards": 2,
                           "parameters_mb": param_mb, "chunks": args.chunks, "chunk_rows": CHUNK_ROWS,
                           "mb": measured, "corpus": str(args.corpus or "wikipedia excerpt"),
                           "broadcast_model": [dict(zip(("settings", "vocabulary", "pickled_bytes_per_word",
                                                         "unpickled_bytes_per_word"), row)) for row in vocab]})


if __name__ == "__main__":
    main()
