"""Nothing assumes localhost: clients in another network namespace reach the shards only through the advertised
address, and fail with ShardTimeout naming the endpoint, within their timeout, when it is unreachable.

The namespace is joined to this host by a veth pair with test-only addresses (see netns.py); no packet goes
anywhere but through that pair or a loopback. Skipped where ``ip netns add`` is not permitted.
"""
import json
import os
import pickle
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from netns import Namespace, ip, permitted
from standalone import Standalone, parse_result, recipe, spark_submit

pytestmark = pytest.mark.cluster

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
TIMEOUT = 3.0  # seconds; one wait is TIMEOUT, two would be twice it: the margin between is the client's own time


@pytest.fixture(scope="module")
def namespace():
    why = permitted()
    if why:
        pytest.skip(why)
    ns = Namespace()
    try:
        yield ns.create()
    finally:
        ns.remove()


def params():
    return {"w": np.zeros((1000, 4), np.float32), "b": np.zeros(3)}


def run_client(ns, address, tmp_path) -> dict:
    """netns_client.py inside ``ns``, with this interpreter and this tree's deepdist; never hangs."""
    path = tmp_path / "address.pickle"
    path.write_bytes(pickle.dumps(address))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    result = ns.run([sys.executable, HERE / "netns_client.py", path, TIMEOUT], capture_output=True, text=True,
                    timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def assert_timed_out(report, endpoint_host):
    assert report.get("error") == "ShardTimeout", report
    assert report["endpoint"].startswith(f"tcp://{endpoint_host}:")
    assert report["endpoint"] in report["message"] and f"within {TIMEOUT:g} s" in report["message"]
    # The first request waits out the timeout, and nothing waits again while the client closes: one wait,
    # not two (a bound at the second wait, not a guess at how long a loaded machine takes after the first).
    assert TIMEOUT <= report["seconds"] < 2 * TIMEOUT, report


def test_a_client_in_another_namespace_reaches_the_shards_at_the_advertised_address(namespace, start_server,
                                                                                   tmp_path):
    given = params()
    ps = start_server(given, shards=2, host="0.0.0.0", advertise=namespace.host_address)
    assert all(e.startswith(f"tcp://{namespace.host_address}:") for e in ps.address.endpoints)
    report = run_client(namespace, ps.address, tmp_path)
    assert "error" not in report, report
    assert report["pulled"] == [0.0, 2.5, 2.5]
    assert ps.params["w"][[1, 998], 0].tolist() == [2.5, 2.5]  # the push landed in the driver's arrays
    # Its connections came from the namespace's own address, through the veth pair.
    assert report["source"] == [namespace.peer_address] * 2


def test_loopback_inside_the_namespace_is_not_the_driver(namespace, start_server, tmp_path):
    ps = start_server(params(), shards=2, host="0.0.0.0", advertise="127.0.0.1")
    assert_timed_out(run_client(namespace, ps.address, tmp_path), "127.0.0.1")


def test_an_advertised_address_without_a_route_fails_with_shard_timeout(namespace, start_server, tmp_path):
    nowhere = f"{namespace.subnet}.9"  # test-only, outside the namespace's /30: no route to it in there
    ps = start_server(params(), shards=2, host="0.0.0.0", advertise=nowhere)
    assert_timed_out(run_client(namespace, ps.address, tmp_path), nowhere)


def test_a_blackholed_driver_fails_with_shard_timeout(namespace, start_server, tmp_path):
    ps = start_server(params(), shards=2, host="0.0.0.0", advertise=namespace.host_address)
    route = ["route", "add", "blackhole", f"{namespace.host_address}/32"]
    ip(*route, namespace=namespace.name)  # as a firewall that drops the driver's ports would
    try:
        assert_timed_out(run_client(namespace, ps.address, tmp_path), namespace.host_address)
    finally:
        ip("route", "del", "blackhole", f"{namespace.host_address}/32", namespace=namespace.name, check=False)
    # The same server is fine once the route is back: the failure was the network's.
    report = run_client(namespace, ps.address, tmp_path)
    assert report["pulled"] == [0.0, 2.5, 2.5], report


@pytest.fixture(scope="module")
def namespaced_cluster(namespace, java, tmp_path_factory):
    """A Spark master on the host side of the veth pair, and its one worker inside the namespace."""
    root = tmp_path_factory.mktemp("standalone-netns")
    cluster = Standalone(root, host=namespace.host_address, cores=2)
    try:
        started = time.monotonic()
        cluster.start_master()
        cluster.start_worker(1, host=namespace.peer_address, prefix=namespace.prefix())
        cluster.wait_workers(1)
        cluster.start_seconds = time.monotonic() - started
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_spark_executors_in_another_namespace_train_through_the_advertised_address(namespace, namespaced_cluster,
                                                                                  packed):
    """spark-submit from the host to a worker in the namespace; DeepDist's defaults (shards on every interface,
    advertised as spark.driver.host) are all the executors need to find the shards."""
    host = namespace.host_address
    options = recipe(packed, f"spark.driver.host={host}", f"spark.driver.bindAddress={host}")
    args = [REPO / "tests" / "cluster" / "w2v_job.py", "--max-sentences", 2000, "--epochs", 1]
    result = spark_submit(namespaced_cluster, options + args, timeout=500)
    assert result.returncode == 0, f"{result.stdout}\n--- stderr\n{result.stderr[-15000:]}"
    report = parse_result(result.stdout)
    print(f"\nnamespaced cluster started in {namespaced_cluster.start_seconds:.1f} s; spark-submit to finish "
          f"{result.seconds:.1f} s; {report['words_per_second']:,.0f} words/s", file=sys.stderr)
    assert report["master"] == f"spark://{host}:{namespaced_cluster.port}"
    assert report["endpoints"] and all(e.startswith(f"tcp://{host}:") for e in report["endpoints"])
    for executor in report["executors"]:  # every task ran inside the namespace, with the shipped venv
        assert executor["interfaces"] == sorted(["lo", namespace.veth_peer]), executor
        assert executor["kernels"] == "cython" and "/environment/lib/" in executor["deepdist"]
    assert report["summary"]["words"] == report["words"] and report["summary"]["updates"] > 0
