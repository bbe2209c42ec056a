"""The bench scripts, each run as its own program at tiny sizes: they exit cleanly, print a table naming every
case they measured, and write the JSON the README describes, whose figures are consistent with their own
definitions (a ratio equals the quotient it stands for, a ``met`` flag equals ``ratio >= goal``).

Nothing here checks speed: the figures are asserted positive and consistent, never fast. The point is that
the scripts, which no other test runs, keep working as the library under them changes.
"""
import itertools
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from deepdist import shm

ROOT = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
WORD2VEC_MAX_WORDS = 30_000  # enough for a vocabulary that holds a few WordSim353 pairs and analogies
ANALOGY_QUESTIONS = 19544  # questions in gensim's questions-words.txt
INTERRUPTED_EXIT_TIMEOUT = 30  # seconds a script that timed out gets to clean up after an interrupt


def run_bench(script, *args, timeout, env=None):
    """stdout of ``python bench/<script> args`` run from the repository root, after asserting that it exited
    with 0 and left none of its shared memory behind.

    Popen rather than subprocess.run: its pid names the segments it creates, and a timeout must end more than
    the script. The script is interrupted first, so that its with-blocks stop the servers and free their
    shared memory; whatever of its process group (shards, Spark's JVM, baseline servers) is left a while
    later is killed."""
    # The scripts import this checkout's deepdist, installed or not (bench/kernels.py's docstring).
    paths = [str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths), **(env or {}))
    command = [sys.executable, f"bench/{script}"] + [str(arg) for arg in args]
    with subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGINT)
            try:
                stdout, stderr = process.communicate(timeout=INTERRUPTED_EXIT_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                stdout, stderr = process.communicate(timeout=INTERRUPTED_EXIT_TIMEOUT)
            pytest.fail(f"{script} did not finish within {timeout} s:\n{stderr[-5000:]}")
    assert process.returncode == 0, f"{script} exited with {process.returncode}:\n{stderr[-5000:]}"
    # The resource tracker unlinks what a script leaks when it exits, and says so on stderr.
    assert "leaked shared_memory" not in stderr, stderr[-5000:]
    assert not shm.leftover(f"{shm.PREFIX}{process.pid}-")
    return stdout


def printed_tables(stdout):
    """The first column of each table bench/_common.print_table printed: the lines under its rule of dashes
    that have its shape (every cell is padded to its column's width, columns two spaces apart), so that a
    line printed after the table is not taken for a row even when it is as wide."""
    lines = stdout.splitlines()
    tables = []
    for i, rule in enumerate(lines):
        if rule and set(rule) <= {"-", " "}:
            gaps = [j for j, char in enumerate(rule) if char == " "]
            rows = itertools.takewhile(lambda line: len(line) == len(rule) and all(line[j] == " " for j in gaps),
                                       lines[i + 1:])
            tables.append([row.split("  ")[0] for row in rows])
    return tables


def is_rate(value):
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def load_json(path):
    return json.loads(Path(path).read_text())


def assert_met_follows_goal(result):
    assert result["met"] == (None if result["goal"] is None else result["ratio"] >= result["goal"]), result


def test_kernels_bench_rates_and_ratios_agree(tmp_path):
    out = tmp_path / "kernels.json"
    # One timed run per kernel: a ratio, the median of per-run ratios, is then exactly the quotient of the rates.
    stdout = run_bench("kernels.py", "--rows", 2000, "--dense-mb", 1, "--repeat", 1, "--json", out, timeout=120)
    payload = load_json(out)
    assert payload["config"]["rows"] == 2000 and payload["config"]["dense_mb"] == 1
    results = payload["results"]
    assert {r["name"].split()[0] for r in results} == {"scatter_add", "gather", "nonzero_rows", "axpy", "max_abs",
                                                       "narrow", "widen"}
    for result in results:
        rates = result["rates"]
        assert set(rates) == {"deepdist", "baseline", "memcpy"} and all(map(is_rate, rates.values())), result
        assert is_rate(result["ratio"])
        assert result["ratio"] == pytest.approx(rates["deepdist"] / rates["baseline"], rel=1e-9), result
        assert_met_follows_goal(result)
        for timing in result["timings"].values():
            assert timing["runs"] == 1 and 0 < timing["best_s"] <= timing["median_s"]
    assert printed_tables(stdout) == [[r["name"] for r in results]]


def test_transport_bench_covers_every_case_with_consistent_ratios(tmp_path):
    out = tmp_path / "transport.json"
    # One timed run per case, so each ratio must equal the quotient of the GB/s (as for the kernels).
    stdout = run_bench("transport.py", "--quick", "--repeat", 1, "--json", out, timeout=240)
    results = load_json(out)["results"]
    *cases, latency = results
    assert {(r["op"], r["shards"], r["sparse"]) for r in cases} == {
        (op, shards, sparse) for op in ("push", "pull") for shards in (1, 2) for sparse in (False, True)}
    for case in cases:
        speeds = [case[key] for key in ("deepdist_gbps", "raw_pyzmq_gbps", "raw_pyzmq_numpy_gbps")]
        assert all(map(is_rate, speeds)) and case["messages"] > 0, case
        assert case["ratio"] == pytest.approx(case["deepdist_gbps"] / case["raw_pyzmq_gbps"], rel=1e-9), case
        assert case["ratio_to_numpy"] == pytest.approx(case["deepdist_gbps"] / case["raw_pyzmq_numpy_gbps"],
                                                       rel=1e-9), case
        assert case["goal"] == (0.8 if case["update_bytes"] >= 2**20 else None)  # the goal is for 1 MB and up
        assert_met_follows_goal(case)
        cpu = case["cpu"]
        assert set(cpu) == {"deepdist", "raw", "numpy"}, case
        for usage in cpu.values():
            threads = usage["threads"]
            assert is_rate(usage["wall_s"]) and usage["busiest_thread_s"] == max(threads.values()), usage
            assert usage["busiest_thread"] in threads and usage["cpu_s"] == pytest.approx(sum(threads.values()))
        # Every system's servers are child processes, and they did work: their threads were counted.
        for name, usage in cpu.items():
            assert any(thread.startswith("child ") for thread in usage["threads"]), (name, usage["threads"])
        assert case["busiest_thread_ratio"] == pytest.approx(
            cpu["raw"]["busiest_thread_s"] / cpu["deepdist"]["busiest_thread_s"], rel=1e-9), case
    assert latency["op"] == "small push round trip"
    assert is_rate(latency["deepdist_us"]) and is_rate(latency["raw_pyzmq_us"])
    assert latency["ratio"] == pytest.approx(latency["deepdist_us"] / latency["raw_pyzmq_us"], rel=1e-9)
    table, cpu_table = printed_tables(stdout)
    assert len(table) == len(cases) and cpu_table == table
    for row, case in zip(table, cases):
        kind = "1%-sparse" if case["sparse"] else "dense"
        shards = f"{case['shards']} shard{'s' * (case['shards'] > 1)}"
        assert row == f"{case['op']} {kind} {case['update_bytes'] / 2**20:g} MB, {shards}", row
    assert "small push (512 B row) made and acknowledged" in stdout


def test_memory_bench_measures_every_process_and_the_broadcast_model(tmp_path):
    pytest.importorskip("gensim")  # for the vocabulary of the model a task receives
    out = tmp_path / "memory.json"
    stdout = run_bench("memory.py", "--rows", 20_000, "--dim", 10, "--chunks", 5, "--json", out, timeout=180)
    payload = load_json(out)
    assert payload["parameters_mb"] == 2 * 20_000 * 10 * 4 / 2**20
    measured = payload["mb"]
    for label in ("DeepDist", "copy_back=True"):
        for shard in range(payload["shards"]):
            assert f"shard {shard}, after traffic ({label})" in measured
        assert f"driver, server started ({label})" in measured
    for process, fields in measured.items():
        assert is_rate(fields["Rss"]), process
        assert all(math.isfinite(mb) and mb >= 0 for mb in fields.values()), (process, fields)
        if "Pss" in fields:  # a whole rollup, not only a peak
            assert fields["Pss"] <= fields["Rss"] and fields["Private_Dirty"] <= fields["Rss"], (process, fields)
    broadcast = payload["broadcast_model"]
    assert [row["settings"] for row in broadcast] == ["negative 5", "hierarchical softmax"]
    assert broadcast[0]["vocabulary"] == broadcast[1]["vocabulary"] > 0  # one corpus, one min_count
    for row in broadcast:
        assert is_rate(row["pickled_bytes_per_word"]) and is_rate(row["unpickled_bytes_per_word"]), row
    assert printed_tables(stdout) == [list(measured), [row["settings"] for row in broadcast]]


@pytest.fixture(scope="module")
def word2vec_bench(tmp_path_factory):
    """(JSON path, stdout) of one bench/word2vec.py run over every system, on a slice of the excerpt."""
    pytest.importorskip("pyspark")
    pytest.importorskip("gensim")
    folder = tmp_path_factory.mktemp("word2vec-bench")
    out = folder / "word2vec.json"
    # Spark's scratch files (block manager, PySpark's temporary files) go under the test's folder too.
    stdout = run_bench("word2vec.py", "--max-words", WORD2VEC_MAX_WORDS, "--epochs", 1, "--repeat", 1,
                       "--json", out, timeout=400, env={"SPARK_LOCAL_DIRS": str(folder / "spark-local")})
    return out, stdout


def test_word2vec_bench_runs_every_system_and_draws_its_plot(word2vec_bench):
    out, stdout = word2vec_bench
    payload = load_json(out)
    config, rows = payload["config"], payload["results"]
    # Run without --systems: every system the bench knows (its ALL_SYSTEMS), in that order.
    systems = ["gensim", "deepdist", "legacy2014", "legacy2014-fine", "mllib", "gensim-hs", "deepdist-hs"]
    assert config["systems"] == systems
    assert [row["system"] for row in rows] == systems
    assert config["words"] == WORD2VEC_MAX_WORDS and config["epochs"] == 1
    for row in rows:
        # A system that fails is reported in its row, not by the exit code.
        assert "error" not in row, row.get("error")
        # every word of the slice, legacy2014-fine's too (no --legacy-max-words)
        assert row["words"] == config["words"] * config["epochs"], row["system"]
        assert is_rate(row["train_s"]) and is_rate(row["words_per_s"]), row["system"]
        assert row["words_per_s"] == pytest.approx(row["words"] / row["train_s"], rel=1e-9)
        quality = row["quality"]
        assert -1 <= quality["wordsim353_spearman"] <= 1, row["system"]
        assert -1 <= quality["wordsim353_pearson"] <= 1, row["system"]
        assert 0 <= quality["wordsim353_oov_pct"] < 100, row["system"]
        assert 0 <= quality["analogy_accuracy"] <= 1 and quality["analogy_answered"] > 0, row["system"]
        assert quality["analogy_coverage_pct"] == pytest.approx(
            100 * quality["analogy_answered"] / ANALOGY_QUESTIONS)
    # The same sentences and min_count for every system: the same vocabulary.
    assert len({row["vocab_size"] for row in rows}) == 1
    by_system = {row["system"]: row for row in rows}
    for name in ("legacy2014", "legacy2014-fine"):
        assert by_system[name]["details"]["backend"] == "flask"  # the 2014 design's server, as in 2014
    assert payload["goals"]
    for check in payload["goals"]:
        a, b = by_system[check["system"]], by_system[check["baseline"]]
        if check["metric"] == "words/s":
            assert is_rate(check["ratio"])
            assert check["ratio"] == pytest.approx(a["words_per_s"] / b["words_per_s"], rel=1e-9)
        else:  # on this tiny corpus a WordSim353 score, and so the ratio, can be negative
            assert check["metric"] == "WordSim353"
            expected = a["quality"]["wordsim353_spearman"] / b["quality"]["wordsim353_spearman"]
            assert check["ratio"] == pytest.approx(expected, rel=1e-9)
        assert_met_follows_goal(check)

    assert printed_tables(stdout) == [systems, [check["system"] for check in payload["goals"]]]
    assert out.with_suffix(".png").read_bytes().startswith(PNG_MAGIC)


def test_word2vec_bench_with_three_cores_trains_three_tasks_at_once(tmp_path):
    # --cores 3: local[3], three partitions, three tasks at once. The only way this suite reaches train's
    # path beyond two tasks (its own SparkContext is local[2]): shorter syncs, and hierarchical softmax's
    # hot rows moved toward each task's values; here over the float16 wire (the hot rows' values read
    # again after training come back widened).
    pytest.importorskip("pyspark")
    pytest.importorskip("gensim")
    from deepdist.word2vec import default_chunk_words

    out = tmp_path / "word2vec.json"
    run_bench("word2vec.py", "--systems", "deepdist,deepdist-hs", "--cores", 3, "--max-words",
              WORD2VEC_MAX_WORDS, "--epochs", 1, "--wire-dtype", "float16", "--json", out, "--no-plot",
              timeout=300,
              env={"SPARK_LOCAL_DIRS": str(tmp_path / "spark-local")})
    payload = load_json(out)
    assert payload["config"]["cores"] == payload["config"]["partitions"] == 3
    assert payload["config"]["wire_dtype"] == "float16"
    rows = {row["system"]: row for row in payload["results"]}
    for name, hs in (("deepdist", False), ("deepdist-hs", True)):
        assert "error" not in rows[name], rows[name].get("error")
        summary = rows[name]["details"]["summary"]
        assert summary["tasks_at_once"] == 3 and summary["partitions"] == 3
        assert summary["chunk_words"] == default_chunk_words(hs, 3) < default_chunk_words(hs, 2)
        assert (summary["hot_rows"] > 0) == hs  # the Huffman nodes near the root, "the", ...
        assert summary["words"] == WORD2VEC_MAX_WORDS


def test_plot_word2vec_draws_the_bench_json(word2vec_bench, tmp_path):
    out, _ = word2vec_bench
    png = tmp_path / "again.png"
    stdout = run_bench("plot_word2vec.py", out, "--out", png, timeout=120)
    assert f"wrote {png}" in stdout
    assert png.read_bytes().startswith(PNG_MAGIC)


def test_link_bench_shapes_only_the_shards_traffic_and_removes_its_namespace(tmp_path):
    # bench/link.py runs deepdist's word2vec in a network namespace of its own whose loopback holds the traffic
    # to and from the shards' ports to a rate. What is asserted is where the bytes went, never how fast: every
    # byte the clients counted crossed the shaped classes in the shaped runs, none did in the unshaped ones.
    pytest.importorskip("pyspark")
    pytest.importorskip("gensim")
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import link
    finally:
        sys.path.remove(str(ROOT / "bench"))
    why = link.shaping_unavailable()
    if why:
        pytest.skip(why)
    out = tmp_path / "link.json"
    stdout = run_bench("link.py", "--systems", "deepdist", "--rates", "200mbit", "--max-words", WORD2VEC_MAX_WORDS,
                       "--epochs", 1, "--json", out, timeout=300,
                       env={"SPARK_LOCAL_DIRS": str(tmp_path / "spark-local")})
    payload = load_json(out)
    runs = [(row["link"], row["wire_dtype"]) for row in payload["results"]]
    assert runs == [(None, "float32"), (None, "float16"), ("200mbit", "float32"), ("200mbit", "float16")]
    for row in payload["results"]:
        assert "error" not in row, row.get("error")
        assert row["words"] == WORD2VEC_MAX_WORDS and is_rate(row["words_per_s"])
        summary, through = row["details"]["summary"], row["through_link"]
        if row["link"] is None:
            assert through == {"to_shards": 0, "from_shards": 0}, row
        else:
            # The classes carry the clients' bytes plus TCP/IP headers and acknowledgements; Spark's own
            # traffic in the same namespace bypasses them.
            assert summary["bytes_sent"] < through["to_shards"] < 2 * summary["bytes_sent"] + 1e6, row
            assert summary["bytes_received"] < through["from_shards"] < 2 * summary["bytes_received"] + 1e6, row
    assert [row["wire_dtype"] for row in payload["results"]] == ["float32", "float16"] * 2
    assert printed_tables(stdout) == [["deepdist"] * 4]
    # The run inside the namespace had a pid of its own, which names its shards' shared memory: none of it is
    # left, and neither is the namespace.
    config = payload["config"]
    assert config["namespace"].startswith("deepdist-link-") and config["pid"] > 0
    assert not shm.leftover(f"{shm.PREFIX}{config['pid']}-")
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=30).stdout
    assert config["namespace"] not in namespaces.split()
