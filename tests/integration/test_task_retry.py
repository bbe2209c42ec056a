"""A Spark task that fails part-way and is retried (docs/configuration.md, "What a retried task means"):
the job completes, the pushes of the failed attempt stay applied once, the retry's are applied once, and
nothing else is lost or doubled.

Local mode retries a task only when the master says so (``local[N,F]``), and the session's SparkContext is
``local[2]``: the job runs in its own interpreter with its own SparkContext.
"""
import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("pyspark")

JOB = r"""
import json, os, sys
import numpy as np
from pyspark import SparkConf, SparkContext, TaskContext
from deepdist import DeepDist
from deepdist.spark import PROGRESS, RECORDS

FAIL_AFTER = 3  # pushes the first attempt of partition 0 makes before it fails

def gradient(model, records):
    # One record per call (batch=1); the task counts its calls in the worker's memory.
    context = TaskContext.get()
    key = (context.stageId(), context.partitionId(), context.attemptNumber())
    calls = CALLS[key] = CALLS.get(key, 0) + 1
    if key[1] == 0 and key[2] == 0 and calls > FAIL_AFTER:
        raise RuntimeError("the first attempt of partition 0 fails here")
    update = np.zeros(len(model["w"]))
    for record in records:
        update[record % len(update)] += record
    return {"w": update}

CALLS = {}
conf = (SparkConf().setMaster("local[2,2]").set("spark.ui.enabled", "false")
        .set("spark.ui.showConsoleProgress", "false").set("spark.local.dir", sys.argv[1]))
sc = SparkContext(conf=conf)
sc.setLogLevel("OFF")
records = sc.parallelize(range(1, 21), 2)  # partition 0 holds 1..10
model = {"w": np.zeros(4)}
with DeepDist(model, progress=False) as dd:
    summary = dd.train(records, gradient, batch=1)
    progress = dd.progress_counts()
print("RESULT " + json.dumps({"w": model["w"].tolist(), "records": summary["records"],
                              "counted_records": float(progress[RECORDS])}), flush=True)
sc.stop()
"""


def test_a_retried_task_trains_its_partition_again_and_the_failed_attempts_pushes_stay(tmp_path):
    env = dict(os.environ, PYSPARK_PYTHON=sys.executable, SPARK_LOCAL_IP="127.0.0.1")
    result = subprocess.run([sys.executable, "-c", JOB, str(tmp_path)], env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-5000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, result.stdout + result.stderr[-5000:]
    report = json.loads(lines[0][len("RESULT "):])

    expected = [0.0] * 4
    for record in list(range(1, 21)) + [1, 2, 3]:  # every record once, and the failed attempt's 3 pushes
        expected[record % 4] += record
    assert report["w"] == expected
    assert report["records"] == 20             # the summary adds up the tasks that succeeded
    assert report["counted_records"] == 23     # the live counters saw the failed attempt's records too
