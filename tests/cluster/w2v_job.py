"""examples/word2vec.py for spark-submit, with the knobs a test needs (run by tests/cluster/test_spark_submit.py).

    spark-submit --master spark://HOST:7077 ... tests/cluster/w2v_job.py [CORPUS] [--epochs N]
        [--max-sentences N] [--partitions N] [--output DIR]

It trains exactly as the example does (``deepdist.word2vec.build_model`` and ``train`` under ``DeepDist``), but
takes the master from spark-submit, and prints one line ``RESULT {json}`` with what the test checks: the
training summary, the shards' endpoints, and where deepdist was imported from on the driver and on every
executor. ``--output DIR`` saves the trained vectors as DIR/vectors.kv (gensim KeyedVectors).
"""
import argparse
import json
import os
import sys
import time


def where_am_i(_):
    """Runs on an executor: which interpreter and which deepdist this task imported."""
    import deepdist
    import deepdist.kernels
    import gensim

    with open("/proc/self/net/dev") as f:  # the network interfaces of this task's network namespace
        interfaces = sorted(line.split(":")[0].strip() for line in f.readlines()[2:])
    return [{"interfaces": interfaces, "python": sys.executable, "prefix": sys.prefix, "deepdist": deepdist.__file__,
             "gensim": gensim.__file__, "kernels": deepdist.kernels.IMPLEMENTATION, "cwd": os.getcwd(),
             "pythonpath": os.environ.get("PYTHONPATH", "")}]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", nargs="?", help="one sentence per line (default: gensim's Wikipedia excerpt)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--max-sentences", type=int, default=None)
    parser.add_argument("--partitions", type=int, default=None, help="default: the cluster's cores")
    parser.add_argument("--output", default=None)
    parser.add_argument("--unreachable", metavar="ADDRESS", default=None,
                        help="then train once more with shards bound to 127.0.0.1 but advertised as ADDRESS and "
                             "a 2 s timeout, and report the error the job fails with")
    args = parser.parse_args()

    from pyspark import SparkConf, SparkContext

    import deepdist
    import deepdist.kernels
    from deepdist import DeepDist
    from deepdist.word2vec import build_model, split_line, train, wikipedia_sentences

    started = time.monotonic()
    # No master here: spark-submit's --master decides (a master set in SparkConf would override it).
    sc = SparkContext(conf=SparkConf().setAppName("deepdist-word2vec-job")
                      .set("spark.ui.showConsoleProgress", "false"))
    sc.setLogLevel("WARN")
    context_seconds = time.monotonic() - started
    partitions = args.partitions or sc.defaultParallelism
    executors = sc.parallelize(range(4 * partitions), 4 * partitions).mapPartitions(where_am_i).collect()

    if args.corpus:
        corpus = sc.textFile(args.corpus, partitions).flatMap(split_line)
    else:
        sentences = wikipedia_sentences()[:args.max_sentences]
        corpus = sc.parallelize(sentences, partitions)
    corpus = corpus.cache()

    model = build_model(corpus, vector_size=100, window=5, min_count=5)
    with DeepDist(model) as dd:
        endpoints = list(dd.address.endpoints)
        client_options = dict(dd.client_options)
        summary = train(dd, corpus, epochs=args.epochs)
    if args.output:
        os.makedirs(args.output, exist_ok=True)
        model.wv.save(os.path.join(args.output, "vectors.kv"))
    failure = None
    if args.unreachable:
        small = sc.parallelize(wikipedia_sentences()[:200], partitions)
        started = time.monotonic()
        try:
            with DeepDist(model, host="127.0.0.1", advertise=args.unreachable, timeout=2) as dd:
                train(dd, small, epochs=1)
        except Exception as error:  # noqa: BLE001 - reported to the test
            failure = {"type": type(error).__name__,
                       "lines": [line for line in str(error).splitlines() if "ShardTimeout" in line][:8],
                       "seconds": time.monotonic() - started,
                       "max_failures": int(sc.getConf().get("spark.task.maxFailures", "4"))}
    result = {
        "master": sc.master, "default_parallelism": sc.defaultParallelism, "partitions": partitions,
        "context_seconds": context_seconds, "sentences": model.corpus_count, "words": model.corpus_total_words,
        "vocabulary": len(model.wv), "epochs": args.epochs, "summary": summary,
        "words_per_second": summary["words"] / summary["seconds"], "endpoints": endpoints,
        "client_options": client_options, "executors": executors, "failure": failure,
        "driver": {"python": sys.executable, "prefix": sys.prefix, "deepdist": deepdist.__file__,
                   "kernels": deepdist.kernels.IMPLEMENTATION},
    }
    print("RESULT " + json.dumps(result), flush=True)
    for word in ["france", "music", "war", "computer", "river", "god"]:
        if word in model.wv:
            print(f"{word:>9}: {', '.join(w for w, _ in model.wv.most_similar(word, topn=8))}")
    sc.stop()


if __name__ == "__main__":
    main()
