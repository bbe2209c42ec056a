"""docs/cluster.md, tested: spark-submit a word2vec job to a Spark standalone cluster (a master and two workers
on 127.0.0.1, started from the pyspark pip package), with deepdist shipped to the executors as a wheel inside
a packed venv (``--archives env.tar.gz#environment``). Executors see nothing of this machine's packages.
"""
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from standalone import free_port_run, parse_result, recipe, spark_submit

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
EPOCHS = 10
SHARDS = 3
UNREACHABLE = "127.0.0.2"  # shards bind 127.0.0.1 only: nothing listens at this address


def wordsim(vectors) -> float:
    from gensim.test.utils import datapath

    return float(vectors.evaluate_word_pairs(datapath("wordsim353.tsv"))[1][0])


@pytest.fixture(scope="module")
def word2vec_run(cluster, packed, tmp_path_factory):
    """One submission of tests/cluster/w2v_job.py: the whole Wikipedia excerpt, EPOCHS passes, deepdist's
    settings from spark-submit --conf (the float16 wire among them: the executors' tasks convert with the
    wheel's compiled kernels), then a second DeepDist advertised at an unreachable address."""
    output = tmp_path_factory.mktemp("w2v-output")
    args = [REPO / "tests" / "cluster" / "w2v_job.py", "--epochs", EPOCHS, "--output", output,
            "--unreachable", UNREACHABLE]
    for _ in range(3):  # the ports were free when probed; another process may take one before the shards bind
        port = free_port_run(SHARDS)
        # Tasks start once both workers' executors have registered (standalone's default is not to wait),
        # so that the test can see both run them.
        options = recipe(packed, "spark.driver.host=127.0.0.1", f"spark.deepdist.port={port}",
                         f"spark.deepdist.shards={SHARDS}", "spark.deepdist.timeout=30",
                         "spark.deepdist.wireDtype=float16", "spark.cores.max=2",
                         "spark.scheduler.minRegisteredResourcesRatio=1.0",
                         "spark.scheduler.maxRegisteredResourcesWaitingTime=120s")
        result = spark_submit(cluster, options + args, timeout=500)
        if "cannot listen on" not in result.stderr:
            break
    assert result.returncode == 0, f"{result.stdout}\n--- stderr\n{result.stderr[-15000:]}"
    report = parse_result(result.stdout)
    print(f"\ncluster started in {cluster.start_seconds:.1f} s; spark-submit to finish {result.seconds:.1f} s; "
          f"SparkContext {report['context_seconds']:.1f} s; training {report['summary']['seconds']:.1f} s, "
          f"{report['words_per_second']:,.0f} words/s; unreachable shards failed the job after "
          f"{(report['failure'] or {}).get('seconds', float('nan')):.1f} s", file=sys.stderr)
    return result, report, output, port


def test_executors_run_the_shipped_venv_not_this_machines_packages(word2vec_run, cluster, packed):
    _, report, _, _ = word2vec_run
    assert report["master"] == cluster.url
    assert report["default_parallelism"] == 2
    work = str(cluster.dirs["work"])
    executor_dirs = set()
    for executor in report["executors"]:
        environment = executor["cwd"] + "/environment"
        assert executor["cwd"].startswith(work + "/worker-")      # a standalone executor's work folder
        assert executor["python"] == environment + "/bin/python"  # ./environment/bin/python
        assert executor["prefix"] == environment
        assert executor["deepdist"].startswith(environment + "/lib/")  # the wheel, unpacked from the archive
        assert executor["gensim"].startswith(environment + "/lib/")
        assert executor["kernels"] == "cython"
        assert str(packed.env) not in json.dumps(executor) and str(REPO) not in json.dumps(executor)
        executor_dirs.add(executor["cwd"])
    assert len({path.split("/worker-")[1].split("/")[0] for path in executor_dirs}) == 2  # both workers
    # The driver is the venv's own interpreter, with deepdist from the same wheel.
    assert report["driver"]["python"] == str(packed.python)
    assert report["driver"]["deepdist"].startswith(str(packed.env / "lib"))
    assert report["driver"]["kernels"] == "cython"


def test_deepdist_settings_come_from_spark_conf(word2vec_run):
    _, report, _, port = word2vec_run
    # spark.deepdist.port / shards, and the advertised host defaults to spark.driver.host.
    assert report["endpoints"] == [f"tcp://127.0.0.1:{port + i}" for i in range(SHARDS)]
    assert report["client_options"] == {"timeout": 30.0, "window": 32, "wire_dtype": "float16"}


def test_word2vec_trains_every_word_of_every_epoch_on_the_cluster(word2vec_run):
    _, report, output, _ = word2vec_run
    summary = report["summary"]
    assert 8000 < report["sentences"] < 9000 and 400_000 < report["words"] < 480_000
    assert summary["words"] == EPOCHS * report["words"]
    assert summary["records"] == EPOCHS * report["sentences"]
    assert summary["partitions"] == EPOCHS * report["partitions"]
    assert summary["effective_words"] > 0.5 * summary["words"]


def test_the_trained_vectors_are_word2vec_quality(word2vec_run):
    from gensim.models import KeyedVectors

    result, report, output, _ = word2vec_run
    vectors = KeyedVectors.load(str(output / "vectors.kv"))
    assert len(vectors) == report["vocabulary"] and vectors.vector_size == 100
    assert np.isfinite(vectors.vectors).all()
    # Single-process gensim scores about 0.39 after 10 passes over this excerpt; untrained vectors 0.02 +- 0.06.
    score = wordsim(vectors)
    print(f"WordSim353 {score:.3f}", file=sys.stderr)
    assert score > 0.25
    assert "   france: " in result.stdout  # the job printed neighbours, as the example does


def test_unreachable_shards_fail_the_job_with_shard_timeout_not_a_hang(word2vec_run):
    _, report, _, _ = word2vec_run
    failure = report["failure"]
    assert failure is not None, "training against unreachable shards did not fail"
    assert failure["type"] == "Py4JJavaError"  # a failed Spark job; its cause is the task's ShardTimeout
    assert any("ShardTimeout: shard" in line and f"tcp://{UNREACHABLE}:" in line and "within 2 s" in line
               for line in failure["lines"]), failure
    # Each attempt of a task gives up after the configured 2 s, not the default 60 s: Spark tries a task
    # max_failures times, and the job fails long before the default timeout would have let it.
    assert failure["seconds"] < failure["max_failures"] * 60, failure


def test_the_example_runs_on_the_cluster_with_the_documented_recipe(cluster, packed, tmp_path):
    """docs/cluster.md's command, verbatim: examples/word2vec.py on a small corpus file."""
    from deepdist.word2vec import wikipedia_sentences

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("".join(" ".join(sentence) + "\n" for sentence in wikipedia_sentences()[:1500]))
    before = {app["id"] for app in cluster.status().get("completedapps", [])}
    result = spark_submit(cluster, recipe(packed) + [REPO / "examples" / "word2vec.py", corpus], timeout=500)
    apps = [app for app in cluster.status().get("completedapps", []) + cluster.status().get("activeapps", [])
            if app["id"] not in before]
    assert apps, "examples/word2vec.py did not run on the cluster: it ignored spark-submit --master"
    assert result.returncode == 0, f"{result.stdout}\n--- stderr\n{result.stderr[-15000:]}"
    trained = [line for line in result.stdout.splitlines() if line.startswith("trained ")]
    assert len(trained) == 1 and "words/s" in trained[0], result.stdout
    print(f"\nexample: spark-submit to finish {result.seconds:.1f} s; {trained[0]}", file=sys.stderr)
