"""word2vec end to end: deepdist against gensim, Spark MLlib and the 2014 DeepDist design, in one run.

Every system trains on the same sentences (loaded once), with the same hyperparameters, and is scored with
gensim's evaluators: WordSim353 Spearman (with the share of pairs out of vocabulary) and analogy accuracy.

    python bench/word2vec.py                                  # gensim's Wikipedia excerpt, 10 epochs (~5 min)
    python bench/word2vec.py --corpus ../shared/corpus/dictionaries.txt.gz --legacy-max-words 1000000
    python bench/word2vec.py --systems gensim,deepdist --epochs 2 --no-plot     # a quick look
    python bench/word2vec.py --repeat 2       # every system twice, interleaved: medians (this machine is noisy)
    python bench/word2vec.py --order swapped  # the same text in another order: quality depends on the order

Systems (``--systems``, comma-separated, run in that order):
  gensim           gensim Word2Vec, workers=2, one process           skip-gram, negative 5, sample 1e-3
  deepdist         deepdist.word2vec on local[2], 2 shards, its corpus dealt round-robin over the partitions
                   (deepdist.spark.deal, --layout; timed as training, as MLlib's own shuffle)   the same
  legacy2014       the 2014 DeepDist design (bench/legacy2014.py): one model GET and one dense update POST
                   per partition, --partitions partitions             the same
  legacy2014-fine  the same design with partitions of about --chunk-words words (default: deepdist's
                   CHUNK_WORDS), so that it syncs as often as deepdist does (one partition per chunk)   the same
  mllib            pyspark.ml.feature.Word2Vec, numPartitions 2       skip-gram, hierarchical softmax, no sampling
  gensim-hs        gensim configured like MLlib (hs=1, negative=0, sample=0)
  deepdist-hs      deepdist configured like MLlib
All use d=100, window 5, min_count 5 (--min-count), alpha 0.025, seed 1. ``--cores N`` makes every "2" above
(gensim's workers, Spark's local[2], deepdist's partitions, MLlib's numPartitions) N: how many train at once.

words/s = raw corpus words x epochs / wall seconds of training. Excluded and reported apart: building the
vocabulary (gensim's build_vocab on the driver for gensim and the 2014 design, deepdist's Spark word count;
MLlib counts words inside ``fit``: its wall time is split where its training stages start, from Spark's status
store, and the whole ``fit`` is in the JSON too), starting SparkContext, starting deepdist's shards or the 2014
HTTP server, loading the DataFrame MLlib reads, and the Python workers' first import of gensim (warmed up
before each timed Spark row). Bytes on the wire: deepdist's client byte counts (push + pull); the 2014
design's HTTP bodies both ways; MLlib's shuffle write bytes (from the status store; its per-iteration model
broadcasts are not counted); gensim 0.
"""
import argparse
import copy
import math
import os
import random
import statistics
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))
from _common import machine_info, print_table, write_json  # noqa: E402

import numpy as np  # noqa: E402

ALL_SYSTEMS = ("gensim", "deepdist", "legacy2014", "legacy2014-fine", "mllib", "gensim-hs", "deepdist-hs")
SPARK_SYSTEMS = {"deepdist", "legacy2014", "legacy2014-fine", "mllib", "deepdist-hs"}
COMMON = {"vector_size": 100, "window": 5, "min_count": 5, "sg": 1, "alpha": 0.025}
NEGATIVE = {"negative": 5, "hs": 0, "sample": 1e-3}          # the project's default settings
HS = {"negative": 0, "hs": 1, "sample": 0.0}                   # MLlib's fixed settings
SETTINGS = {"gensim": NEGATIVE, "deepdist": NEGATIVE, "legacy2014": NEGATIVE, "legacy2014-fine": NEGATIVE,
            "mllib": HS, "gensim-hs": HS, "deepdist-hs": HS}
WORDSIM_PAIRS = "wordsim353.tsv"
ANALOGIES = "questions-words.txt"
ANALOGY_QUESTIONS = 19544  # questions in questions-words.txt


# -- corpus -------------------------------------------------------------------------------------------------
def load_corpus(path=None, max_words=None) -> list:
    """Token lists: gensim's Wikipedia excerpt (one per paragraph) by default, or one per line of a .txt or
    .txt.gz file. With ``max_words`` only the first that many raw words (the last sentence cut short)."""
    from deepdist.word2vec import read_sentences, wikipedia_sentences

    source = wikipedia_sentences() if path is None else read_sentences(path)
    sentences, words = [], 0
    for sentence in source:
        if not sentence:
            continue
        if max_words is not None and words + len(sentence) > max_words:
            if max_words > words:
                sentences.append(sentence[:max_words - words])
            break
        sentences.append(sentence)
        words += len(sentence)
    return sentences


def reorder(sentences, order, seed) -> list:
    """The corpus in another order: ``original``; ``swapped``, its second half first (the same text, where a
    sorted corpus puts other topics first); ``shuffled``, sentence by sentence with ``seed``. At these
    corpus sizes the order moves every system's WordSim353 by a few hundredths (README, "Corpus layout"),
    so quality is best compared over more than one."""
    if order == "swapped":
        half = len(sentences) // 2
        return sentences[half:] + sentences[:half]
    if order == "shuffled":
        shuffled = list(sentences)
        random.Random(seed).shuffle(shuffled)
        return shuffled
    return sentences


def prefix(sentences, max_words):
    """The first ``max_words`` raw words of ``sentences`` (all of them when None)."""
    if max_words is None:
        return sentences
    out, words = [], 0
    for sentence in sentences:
        if words >= max_words:
            break
        out.append(sentence[:max_words - words])
        words += len(out[-1])
    return out


def count_words(sentences) -> int:
    return sum(map(len, sentences))


# -- quality ------------------------------------------------------------------------------------------------
def evaluate(kv) -> dict:
    """WordSim353 and Google analogies, as gensim scores them (case-insensitive, whole vocabulary)."""
    from gensim.test.utils import datapath

    kv.fill_norms(force=True)
    pearson, spearman, oov = kv.evaluate_word_pairs(datapath(WORDSIM_PAIRS))
    accuracy, sections = kv.evaluate_word_analogies(datapath(ANALOGIES))
    total = sections[-1]
    answered = len(total["correct"]) + len(total["incorrect"])
    return {"wordsim353_spearman": float(spearman[0]), "wordsim353_pearson": float(pearson[0]),
            "wordsim353_oov_pct": float(oov), "analogy_accuracy": float(accuracy),
            "analogy_answered": answered, "analogy_coverage_pct": 100.0 * answered / ANALOGY_QUESTIONS}


# -- the systems --------------------------------------------------------------------------------------------
class Bench:
    def __init__(self, args, sentences):
        self.args, self.sentences = args, sentences
        self.common = dict(COMMON, min_count=args.min_count)  # the hyperparameters every system shares
        self.words = count_words(sentences)
        self.spark = self.sc = None
        self.rdds = {}
        self.vocab_cache = {}
        self.mllib_warm = False

    # Spark
    def start_spark(self, conf=None):
        """Start local Spark (``conf``: more Spark settings); the seconds it took."""
        os.environ["PYSPARK_PYTHON"] = sys.executable
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        # executors import deepdist from this checkout when it is not installed
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
        from pyspark.sql import SparkSession

        started = time.perf_counter()
        self.spark = (SparkSession.builder.master(f"local[{self.args.cores}]").appName("deepdist-bench-word2vec")
                      .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
                      .config("spark.driver.memory", "4g").config(map=conf or {}).getOrCreate())
        self.sc = self.spark.sparkContext
        self.sc.setLogLevel("ERROR")
        self.sc.addPyFile(str(HERE / "legacy2014.py"))
        self.sc.parallelize([0, 1], 2).count()  # the first job starts the Python workers
        return time.perf_counter() - started

    def stop_spark(self):
        if self.spark is not None:
            self.spark.stop()
            self.spark = self.sc = None

    def rdd(self, sentences, partitions):
        key = (id(sentences), partitions)
        if key not in self.rdds:
            self.rdds[key] = self.sc.parallelize(sentences, partitions)
        return self.rdds[key]

    def stages(self, after_stage=-1):
        """Spark's record of the stages after ``after_stage``: dicts of id, name, submitted and completed (epoch
        seconds, None if skipped) and shuffle bytes written."""
        store = self.sc._jsc.sc().statusStore()
        jlist = self.sc._jvm.java.util.ArrayList
        found = store.stageList(jlist(), False, False, getattr(store, "stageList$default$4")(), jlist())
        out = []
        for i in range(found.length()):
            stage = found.apply(i)
            if stage.stageId() <= after_stage:
                continue
            times = [stage.submissionTime(), stage.completionTime()]
            submitted, completed = [t.get().getTime() / 1e3 if t.isDefined() else None for t in times]
            out.append({"id": stage.stageId(), "name": stage.name(), "submitted": submitted,
                        "completed": completed, "shuffle_write": stage.shuffleWriteBytes()})
        return sorted(out, key=lambda stage: stage["id"])

    def warm_python_workers(self):
        """Import gensim (and deepdist.word2vec) in both Python workers, outside the timed part: Spark stops
        Python workers that idled for a minute, and a fresh one spends seconds importing gensim in its first
        task. deepdist's build_model job warms them anyway; the 2014 design builds its vocabulary on the driver."""
        def warm(_):
            import gensim.models.word2vec  # noqa: F401
            try:
                import deepdist.word2vec  # noqa: F401
            except ImportError:
                pass
            time.sleep(0.3)  # keep both tasks running at once, so both workers get one
        self.sc.parallelize(range(self.args.cores), self.args.cores).foreach(warm)

    # gensim's vocabulary, built once per settings and copied for each row that uses it
    def gensim_model(self, settings, workers):
        from gensim.models import Word2Vec

        key = tuple(sorted(settings.items()))
        if key not in self.vocab_cache:
            model = Word2Vec(**self.common, **settings, seed=self.args.seed, workers=workers)
            started = time.perf_counter()
            model.build_vocab(self.sentences)
            self.vocab_cache[key] = (model, time.perf_counter() - started)
        model, seconds = self.vocab_cache[key]
        model = copy.deepcopy(model)
        model.workers = workers
        return model, seconds

    def run_gensim(self, name):
        model, vocab_s = self.gensim_model(SETTINGS[name], workers=self.args.cores)
        started = time.perf_counter()
        model.train(self.sentences, total_examples=model.corpus_count, epochs=self.args.epochs)
        train_s = time.perf_counter() - started
        return {"vocab_s": vocab_s, "train_s": train_s, "words": self.words * self.args.epochs,
                "vocab_size": len(model.wv), "bytes": 0, "quality": evaluate(model.wv),
                "details": {"workers": self.args.cores}}

    def run_deepdist(self, name):
        from deepdist import DeepDist
        from deepdist import word2vec as dw2v
        from deepdist.spark import deal

        rdd = self.rdd(self.sentences, self.args.partitions)
        started = time.perf_counter()
        if self.args.layout == "spread":
            # What examples/word2vec.py does to a corpus of few partitions, and MLlib's fit to its input inside
            # its timed part: deal the sentences round-robin over the partitions (a shuffle), so that the tasks
            # training at once read text from all over the corpus, not one half each (README). Timed as
            # training.
            rdd = deal(rdd, self.args.partitions).cache()
            rdd.count()
        spread_s = time.perf_counter() - started
        started = time.perf_counter()
        model = dw2v.build_model(rdd, **self.common, **SETTINGS[name], seed=self.args.seed)
        vocab_s = time.perf_counter() - started
        self.warm_python_workers()
        started = time.perf_counter()
        with DeepDist(model, shards=2, progress=False, wire_dtype=self.args.wire_dtype,
                      encrypt=self.args.encrypt) as dd:
            setup_s = time.perf_counter() - started
            started = time.perf_counter()
            summary = dw2v.train(dd, rdd, epochs=self.args.epochs, chunk_words=self.args.chunk_words)
            train_s = time.perf_counter() - started + spread_s
        if self.args.layout == "spread":
            rdd.unpersist()
        summary = {key: (float(value) if isinstance(value, (np.floating, float)) else int(value))
                   for key, value in summary.items()}
        wire = summary.get("bytes_sent", 0) + summary.get("bytes_received", 0)
        return {"vocab_s": vocab_s, "train_s": train_s, "words": self.words * self.args.epochs,
                "vocab_size": len(model.wv), "bytes": wire, "quality": evaluate(model.wv),
                "details": {"server_start_s": setup_s, "partitions": self.args.partitions, "shards": 2,
                            "layout": self.args.layout, "spread_s": spread_s,
                            "chunk_words": summary["chunk_words"], "summary": summary,
                            # the share of the tasks' time spent training inside gensim's kernel
                            "kernel_share": summary["kernel_seconds"] / summary["task_seconds"]}}

    def run_legacy(self, name):
        import legacy2014
        from deepdist.word2vec import CHUNK_WORDS

        if name == "legacy2014-fine":
            sentences = prefix(self.sentences, self.args.legacy_max_words)
            partitions = max(1, math.ceil(count_words(sentences) / (self.args.chunk_words or CHUNK_WORDS)))
        else:
            sentences, partitions = self.sentences, self.args.partitions
        words = count_words(sentences)
        rdd = self.rdd(sentences, partitions)
        model, vocab_s = self.gensim_model(SETTINGS[name], workers=1)  # vocabulary of the whole corpus
        epochs = self.args.epochs
        self.warm_python_workers()
        with legacy2014.LegacyServer(model, threaded=self.args.legacy_threaded) as server:
            started = time.perf_counter()
            per_epoch = [legacy2014.train(server, rdd) for _ in range(epochs)]
            train_s = time.perf_counter() - started
        tasks = {}
        for summary in per_epoch:
            for key, value in summary.items():
                tasks[key] = tasks.get(key, 0) + value
        return {"vocab_s": vocab_s, "train_s": train_s, "words": words * epochs, "vocab_size": len(model.wv),
                "bytes": server.stats["bytes_in"] + server.stats["bytes_out"], "quality": evaluate(model.wv),
                "details": {"partitions": partitions, "backend": server.backend,
                            "threaded": self.args.legacy_threaded, "cache": server.cache,
                            "words_per_epoch": words, "truncated": words < self.words,
                            "server": dict(server.stats), "tasks": tasks}}

    def run_mllib(self, name):
        from gensim.models import KeyedVectors
        from pyspark.ml.feature import Word2Vec as SparkWord2Vec

        started = time.perf_counter()
        frame = self.spark.createDataFrame(self.rdd(self.sentences, self.args.partitions).map(lambda s: (s,)),
                                           "text array<string>").cache()
        frame.count()
        load_s = time.perf_counter() - started
        params = dict(vectorSize=self.common["vector_size"], windowSize=self.common["window"],
                      minCount=self.common["min_count"], numPartitions=self.args.cores, maxIter=self.args.epochs,
                      stepSize=self.common["alpha"], seed=self.args.seed, inputCol="text", outputCol="vector")
        if not self.mllib_warm:
            # One untimed fit on a slice first, as the Python workers are warmed for the other Spark rows:
            # the JVM's first fit loads and compiles MLlib's training code (it ran 0.6x as fast as later ones).
            warm = self.spark.createDataFrame(self.sc.parallelize(prefix(self.sentences, 50_000), self.args.cores)
                                              .map(lambda s: (s,)), "text array<string>")
            SparkWord2Vec(**dict(params, maxIter=1, minCount=1)).fit(warm)
            self.mllib_warm = True
        before = max([stage["id"] for stage in self.stages()], default=-1)
        started, wall = time.perf_counter(), time.time()
        fitted = SparkWord2Vec(**params).fit(frame)
        fit_s = time.perf_counter() - started
        stages = self.stages(before)
        shuffled = sum(stage["shuffle_write"] for stage in stages)
        # fit() first counts the words (learnVocab), then repartitions the corpus and trains: split its wall
        # time at the submission of that repartition stage, so that the vocabulary is excluded as for the others
        training = [stage["submitted"] for stage in stages
                    if stage["name"].startswith("repartition at Word2Vec") and stage["submitted"]]
        vocab_s = min(max(min(training) - wall, 0.0), fit_s) if training else None
        train_s = fit_s - (vocab_s or 0.0)
        rows = fitted.getVectors().collect()
        frame.unpersist()
        kv = KeyedVectors(self.common["vector_size"])
        kv.add_vectors([row["word"] for row in rows],
                       np.array([row["vector"].toArray() for row in rows], dtype=np.float32))
        return {"vocab_s": vocab_s, "train_s": train_s, "words": self.words * self.args.epochs,
                "vocab_size": len(kv), "bytes": shuffled, "quality": evaluate(kv),
                "details": {"params": {k: v for k, v in params.items() if k not in ("inputCol", "outputCol")},
                            "maxSentenceLength": 1000, "dataframe_load_s": load_s, "fit_s": fit_s,
                            "words_per_s_whole_fit": self.words * self.args.epochs / fit_s,
                            "bytes_note": "shuffle bytes written by fit(); not its model broadcasts"}}

    def run(self, name):
        runner = {"gensim": self.run_gensim, "gensim-hs": self.run_gensim, "deepdist": self.run_deepdist,
                  "deepdist-hs": self.run_deepdist, "legacy2014": self.run_legacy,
                  "legacy2014-fine": self.run_legacy, "mllib": self.run_mllib}[name]
        row = {"system": name, "settings": dict(self.common, **SETTINGS[name]), "epochs": self.args.epochs}
        print(f"--- {name} ...", flush=True)
        load = os.getloadavg()
        try:
            row.update(runner(name))
            row["words_per_s"] = row["words"] / row["train_s"]
            q = row["quality"]
            share = row.get("details", {}).get("kernel_share")
            print(f"--- {name}: {row['words_per_s']:,.0f} words/s, {row['train_s']:.1f} s, "
                  f"WordSim353 {q['wordsim353_spearman']:.3f}, analogy {q['analogy_accuracy']:.3f}"
                  + (f", {share:.0%} of task time in gensim's kernel" if share else ""), flush=True)
        except Exception as exc:  # one broken system must not lose the others' figures
            traceback.print_exc()
            row["error"] = f"{type(exc).__name__}: {exc}"
        row["loadavg_before"] = load
        return row


# -- report -------------------------------------------------------------------------------------------------
def fmt(value, spec):
    return "n/a" if value is None else format(value, spec)


def combine(runs):
    """One row per system from its ``--repeat`` runs: the medians of the timings, rates and scores; every
    run's own figures under ``runs``; ``details`` are the first run's. A system whose runs all failed gives
    its first error."""
    good = [run for run in runs if "error" not in run]
    if not good:
        return runs[0]
    row = dict(good[0])
    median = statistics.median
    for key in ("vocab_s", "train_s", "words_per_s", "bytes"):
        values = [run[key] for run in good if run[key] is not None]
        row[key] = median(values) if values else None
    row["quality"] = {key: median(run["quality"][key] for run in good) for key in good[0]["quality"]}
    row["runs"] = [{key: run.get(key) for key in ("round", "vocab_s", "train_s", "words_per_s", "quality",
                                                   "loadavg_before", "error")} for run in runs]
    if len(good) < len(runs):
        row["failed_runs"] = len(runs) - len(good)
    return row


def table_rows(rows):
    out = []
    for row in rows:
        if "error" in row:
            out.append([row["system"], settings_label(row["settings"])] + ["error"] * 10)
            continue
        q = row["quality"]
        partitions = row.get("details", {}).get("partitions", "")
        wire = "n/a" if row["bytes"] is None else f"{row['bytes'] / 1e6:,.1f}"
        rates = [run["words_per_s"] for run in row["runs"] if run.get("words_per_s")]
        spread = f"{min(rates) / 1e3:,.0f}-{max(rates) / 1e3:,.0f}k" if len(rates) > 1 else ""
        out.append([row["system"], settings_label(row["settings"]), partitions, fmt(row["vocab_s"], ".1f"),
                    f"{row['train_s']:.1f}", f"{row['words_per_s'] / 1e3:,.0f}k", spread,
                    f"{q['wordsim353_spearman']:.3f}", f"{q['wordsim353_oov_pct']:.1f}",
                    f"{100 * q['analogy_accuracy']:.1f} ({q['analogy_answered']:.0f})", wire, row["vocab_size"]])
    return out


def settings_label(settings):
    return "hs, sample 0" if settings["hs"] else f"neg {settings['negative']}, sample {settings['sample']:g}"


def goals(rows):
    """The goal ratios, for the pairs of systems that ran."""
    ok = {row["system"]: row for row in rows if "error" not in row}

    def ratio(a, b, key):
        """The median over rounds of each round's own ratio (the runs of one round ran side by side)."""
        if a not in ok or b not in ok:
            return None
        get = (lambda r: r["words_per_s"]) if key == "speed" else (lambda r: r["quality"]["wordsim353_spearman"])
        theirs = {run["round"]: get(run) for run in ok[b]["runs"] if run.get("words_per_s")}
        ratios = [get(run) / theirs[run["round"]] for run in ok[a]["runs"]
                  if run.get("words_per_s") and theirs.get(run["round"])]
        return statistics.median(ratios) if ratios else None

    checks = [("deepdist", "gensim", "speed", 0.8), ("deepdist", "gensim", "wordsim353", 0.95),
              ("deepdist-hs", "mllib", "speed", 1.5), ("deepdist-hs", "mllib", "wordsim353", 1.0),
              ("gensim-hs", "mllib", "speed", None), ("gensim-hs", "mllib", "wordsim353", None),
              ("deepdist", "legacy2014", "speed", 20.0), ("deepdist", "legacy2014", "wordsim353", None),
              ("deepdist", "legacy2014-fine", "speed", 20.0), ("deepdist", "legacy2014-fine", "wordsim353", None)]
    out = []
    for a, b, key, goal in checks:
        value = ratio(a, b, key)
        if value is None:
            continue
        met = None if goal is None else value >= goal
        out.append({"system": a, "baseline": b, "metric": "words/s" if key == "speed" else "WordSim353",
                    "ratio": value, "goal": goal, "met": met})
    return out


def make_parser(description=__doc__.split("\n\n")[0]):
    """The options this benchmark takes (bench/link.py takes them too)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--corpus", type=Path, default=None, metavar="PATH",
                        help=".txt or .txt.gz, one sentence per line (default: gensim's Wikipedia excerpt)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="passes over the corpus (default: 10 on the excerpt, else 1)")
    parser.add_argument("--systems", default=",".join(ALL_SYSTEMS),
                        help="comma-separated, run in this order (default: %(default)s)")
    parser.add_argument("--max-words", type=int, default=None, help="use only the first N words of the corpus")
    parser.add_argument("--order", choices=("original", "swapped", "shuffled"), default="original",
                        help="the corpus's sentences as read, its two halves exchanged, or shuffled with --seed "
                             "(default: %(default)s)")
    parser.add_argument("--legacy-max-words", type=int, default=None,
                        help="train legacy2014-fine on the first N words only, to bound its runtime (its quality "
                             "is then not comparable; words/s is)")
    parser.add_argument("--min-count", type=int, default=COMMON["min_count"],
                        help="every system's minimum word count: the vocabulary's size (default: %(default)s)")
    parser.add_argument("--cores", type=int, default=2,
                        help="Spark's local[N] (so N tasks train at once), gensim's workers and MLlib's "
                             "numPartitions; on a machine of fewer cores they share them (default: %(default)s)")
    parser.add_argument("--partitions", type=int, default=None, help="RDD partitions (default: --cores)")
    parser.add_argument("--layout", choices=("spread", "contiguous"), default="spread",
                        help="deepdist's corpus: dealt round-robin over the partitions by a shuffle, timed as "
                             "training (spread), or each partition one contiguous part (default: %(default)s)")
    parser.add_argument("--chunk-words", type=int, default=None,
                        help="deepdist's words between syncs (default: deepdist.word2vec.default_chunk_words: "
                             "10,000, or 5,000 with hs, for 2 tasks at once, fewer for more), and "
                             "legacy2014-fine's words per partition (default: "
                             "CHUNK_WORDS, deepdist's for the settings legacy2014-fine runs)")
    parser.add_argument("--wire-dtype", choices=("float16",), default=None,
                        help="deepdist's values travel as float16 (DeepDist's half-precision wire; default: "
                             "float32, the parameters' own)")
    parser.add_argument("--encrypt", action="store_true",
                        help="deepdist's shards and tasks run CURVE (DeepDist(encrypt=True))")
    parser.add_argument("--legacy-threaded", action="store_true",
                        help="serve the 2014 design from a threading HTTP server (the original's threaded=True)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="rounds over all systems, interleaved; the table shows medians (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, default=HERE / "results" / "word2vec.json", metavar="PATH",
                        help="where to write the results as JSON (default: %(default)s)")
    parser.add_argument("--no-plot", action="store_true", help="do not draw the PNG next to the JSON")
    return parser


def settle(parser, args, known=ALL_SYSTEMS) -> list:
    """Fill in the defaults that depend on other options, check them, and return the systems to run."""
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = set(systems) - set(known)
    if unknown:
        parser.error(f"unknown systems {sorted(unknown)}; known: {', '.join(known)}")
    if args.epochs is None:
        args.epochs = 10 if args.corpus is None else 1
    if args.cores < 1:
        parser.error("--cores must be at least 1")
    if args.partitions is None:
        args.partitions = args.cores
    return systems


def main(argv=None):
    parser = make_parser()
    args = parser.parse_args(argv)
    systems = settle(parser, args)

    loadavg_start = os.getloadavg()
    started = time.perf_counter()
    sentences = reorder(load_corpus(args.corpus, args.max_words), args.order, args.seed)
    load_s = time.perf_counter() - started
    bench = Bench(args, sentences)
    corpus = str(args.corpus) if args.corpus else "gensim Wikipedia excerpt (paragraphs)"
    if args.order != "original":
        corpus += f", {args.order}"
    print(f"corpus: {corpus}: {len(sentences):,} sentences, {bench.words:,} words, loaded in {load_s:.1f} s; "
          f"{args.epochs} epoch(s); load average {loadavg_start[0]:.2f}", flush=True)

    spark_s = None
    runs = []
    try:
        if SPARK_SYSTEMS & set(systems):
            spark_s = bench.start_spark()
            print(f"SparkContext local[{args.cores}] up in {spark_s:.1f} s", flush=True)
        for round_ in range(args.repeat):  # interleaved, so that drifting machine load falls on all alike
            for name in systems:
                runs.append(dict(bench.run(name), round=round_))
    finally:
        bench.stop_spark()
    loadavg_end = os.getloadavg()
    rows = [combine([run for run in runs if run["system"] == name]) for name in systems]

    print()
    print(f"word2vec, {corpus}, {bench.words:,} words x {args.epochs} epoch(s); d=100, window 5, "
          f"min_count {args.min_count}")
    print_table(["system", "settings", "parts", "vocab s", "train s", "words/s", "range", "WS353", "WS OOV %",
                 "analogy % (n)", "MB wire", "vocab"], table_rows(rows))
    checks = goals(rows)
    if checks:
        print()
        print_table(["system", "vs", "metric", "ratio", "goal", "met"],
                    [[c["system"], c["baseline"], c["metric"], f"{c['ratio']:.2f}x",
                      "" if c["goal"] is None else f">= {c['goal']:g}x",
                      "" if c["met"] is None else ("yes" if c["met"] else "NO")] for c in checks])
    payload = {
        "machine": machine_info(),
        "config": {"corpus": corpus, "sentences": len(sentences), "words": bench.words, "epochs": args.epochs,
                   "max_words": args.max_words, "order": args.order, "legacy_max_words": args.legacy_max_words,
                   "cores": args.cores, "partitions": args.partitions, "chunk_words": args.chunk_words,
                   "wire_dtype": args.wire_dtype, "encrypt": args.encrypt,
                   "seed": args.seed, "repeat": args.repeat,
                   "common": bench.common, "systems": systems},
        "loadavg_start": loadavg_start, "loadavg_end": loadavg_end,
        "corpus_load_s": load_s, "spark_start_s": spark_s,
        "results": rows, "goals": checks,
    }
    write_json(args.json, payload)
    if not args.no_plot:
        try:
            import plot_word2vec
        except ImportError as exc:  # matplotlib missing
            print(f"no plot: {exc}")
        else:
            print(f"wrote {plot_word2vec.plot(payload, args.json.with_suffix('.png'))}")
    return payload


if __name__ == "__main__":
    main()
