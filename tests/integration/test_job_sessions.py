"""Each DeepDist job has its own session on the shards: its own descent, and an end after which nothing it
sends is applied. What a custom descent is called with, and that it is applied whole or not at all."""
import threading
import time

import numpy as np
import pytest

from deepdist import Client, DeepDist, DeepDistError, RequestError, ShardDied


def ones_slowly_or_fail(model, data):
    """Partition 0 fails once the other has pushed 3 times (so that it is running: on a busy machine its
    worker may start late); the other pushes +1 a record, slowly, long after the job has failed."""
    records = list(data)
    if records[0] == 0:
        if model["w"][0] >= 3:
            raise ValueError("partition 0 fails")
        time.sleep(0.05)
        return {"w": np.zeros_like(model["w"])}
    time.sleep(0.05)
    return {"w": np.ones_like(model["w"])}


def test_a_failed_job_writes_nothing_after_train_raises(spark_context):
    """Spark stops a failed job's other tasks some seconds later; until then they push. Their pushes are
    refused once train has raised, so the model it leaves is the one the user sees, until the tasks end."""
    model = {"w": np.zeros(4)}
    rdd = spark_context.parallelize([0] * 600 + [1] * 600, 2)  # partition 1: 30 s or more of pushes
    with DeepDist(model, progress=False) as dd:
        with pytest.raises(Exception, match="partition 0 fails"):
            dd.train(rdd, ones_slowly_or_fail, batch=1)
        after_train = dd.model["w"].copy()
        deadline = time.monotonic() + 60
        while running_tasks(spark_context) and time.monotonic() < deadline:
            time.sleep(0.1)  # until the job's other task has ended: Spark stops it, or it finishes
        assert not running_tasks(spark_context)
        np.testing.assert_array_equal(dd.model["w"], after_train)
        # That check means something only if the straggler sent requests after train raised: it did, and the
        # shards refused them (which ended it).
        with Client(dd.address) as client:
            refused = sum(shard["errors_by_code"].get("SERVER", 0) for shard in client.stats())
        assert refused > 0


def running_tasks(spark_context) -> int:
    """Task attempts running on any executor, those of a job that has already failed included."""
    return sum(executor.numRunningTasks for executor in spark_context.statusTracker().getExecutorInfos())


def decay_descent(model, update):
    model.w = 0.5 * model.w + update["w"]


def one_row_dense(model, data):
    list(data)
    delta = np.zeros_like(model["w"])
    delta[0] = 1.0
    return {"w": delta}


def dotted_names_gradient(model, data):
    list(data)
    return {"layer.0": np.ones_like(model["layer.0"]), "b": np.ones_like(model["b"])}


def item_access_descent(model, update):
    model["layer.0"] += 2 * update["layer.0"]  # not an identifier: model.NAME could not reach it
    model["b"] = model["b"] - update["b"]


def test_a_custom_descent_reads_and_writes_a_dict_models_parameters_by_key(spark_context):
    model = {"layer.0": np.zeros((3000, 4)), "b": np.zeros(2)}
    with DeepDist(model, shards=2, progress=False) as dd:
        dd.train(spark_context.parallelize(range(4), 2), dotted_names_gradient, item_access_descent)
    np.testing.assert_array_equal(model["layer.0"], 4.0)
    np.testing.assert_array_equal(model["b"], -2.0)


def test_a_custom_descent_sees_every_row_of_a_dense_update(spark_context):
    """A dense delta that is mostly zero would travel as sparse rows; with a custom descent it goes as it is,
    so a descent that is not linear in the update (decay here) treats every row alike."""
    model = {"w": np.ones((1000, 4))}
    with DeepDist(model, shards=2, progress=False) as dd:
        dd.train(spark_context.parallelize([1], 1), one_row_dense, decay_descent)
    assert model["w"][0].tolist() == [1.5] * 4
    np.testing.assert_array_equal(model["w"][1:], 0.5)


def clipping_descent(model, update):
    """Gradient clipping by the largest value: fails on an update with no rows."""
    scale = min(1.0, 1.0 / np.abs(update["w"]).max())
    model.w += scale * update["w"]


def twos(model, data):
    list(data)
    return {"w": np.full_like(model["w"], 2.0)}


def test_a_descent_is_called_only_on_pushes_that_update_a_parameter(spark_context):
    """Tasks also push the hidden progress counters; a push carrying nothing else is not the user's update."""
    model = {"w": np.zeros(3)}
    with DeepDist(model, shards=2, progress=False) as dd:
        dd.train(spark_context.parallelize([1, 2, 3, 4], 2), twos, clipping_descent, batch=1)
    assert model["w"].tolist() == [4.0] * 3  # four updates of 2, each clipped to 1


def scaled_descent(factor):
    def descent(model, update):
        model.w += factor * update["w"]
    return descent


def ones(model, data):
    return {"w": np.full_like(model["w"], float(len(list(data))))}


def test_concurrent_trains_on_one_deepdist_each_apply_their_own_descent(spark_context):
    model = {"w": np.zeros(2)}
    with DeepDist(model, progress=False) as dd:
        def run(factor):
            dd.train(spark_context.parallelize(range(40), 2), ones, scaled_descent(factor), batch=1)
        threads = [threading.Thread(target=run, args=(factor,)) for factor in (1, 10, 100)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert not any(thread.is_alive() for thread in threads)
    assert model["w"].tolist() == [40 * 111.0] * 2


def test_a_descent_from_the_drivers_own_module_loads_on_the_shards(spark_context, tmp_path, monkeypatch):
    """cloudpickle pickles a function of an importable module by reference: the shards look for the module
    where the driver found it."""
    (tmp_path / "driver_side_descents.py").write_text(
        "def triple(model, update):\n    model.w += 3 * update['w']\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from driver_side_descents import triple

    model = {"w": np.zeros(2)}
    with DeepDist(model, progress=False) as dd:
        dd.train(spark_context.parallelize(range(4), 2), ones, triple)
    assert model["w"].tolist() == [12.0] * 2


class FailsToLoad:
    """A descent the driver can pickle and no shard can load."""

    def __call__(self, model, update):
        pass

    def __reduce__(self):
        return fail_on_load, ()


def fail_on_load():
    raise RuntimeError("this descent cannot be loaded")


def test_a_descent_that_cannot_load_fails_its_train_only(spark_context):
    model = {"w": np.zeros(2)}
    rdd = spark_context.parallelize(range(4), 2)
    with DeepDist(model, shards=2, progress=False) as dd:
        for _ in range(2):  # every shard's answer is read: none is left to be taken for the next one's
            with pytest.raises(DeepDistError, match="cannot be loaded"):
                dd.train(rdd, ones, FailsToLoad())
        dd.train(rdd, ones, scaled_descent(2))
        with pytest.raises(TypeError, match="descent must be a function"):
            dd.train(rdd, ones, 5)
    assert model["w"].tolist() == [8.0] * 2


def test_train_after_a_shard_died_says_so(spark_context):
    model = {"w": np.zeros(2)}
    with pytest.raises(ShardDied, match="shard 1 died"):
        with DeepDist(model, shards=2, progress=False) as dd:
            dd.running().processes[1].kill()
            dd.running().processes[1].wait(10)
            with pytest.raises(ShardDied, match="shard 1 died"):
                dd.train(spark_context.parallelize(range(4), 2), ones, scaled_descent(2))


def half_bad_descent(model, update):
    model.a = model.a + update["a"]     # a good result
    model.b = np.array(["x"] * len(model.b))  # the right shape, and not numbers


def test_a_descent_result_is_written_whole_or_not_at_all(start_server):
    ps = start_server({"a": np.zeros(4), "b": np.zeros(4)}, shards=1)
    address = ps.open_session(half_bad_descent)
    with Client(address, timeout=10) as client:
        client.push({"a": np.ones(4), "b": np.ones(4)})
        with pytest.raises(RequestError, match="DESCENT.*model.b"):
            client.flush()
    assert ps.params["a"].tolist() == [0.0] * 4 and ps.params["b"].tolist() == [0.0] * 4


def exiting_descent(model, update):
    raise SystemExit("the user's descent exits")


def interrupted_descent(model, update):
    raise KeyboardInterrupt


@pytest.mark.parametrize("descent, raised", [(exiting_descent, "SystemExit: the user's descent exits"),
                                             (interrupted_descent, "KeyboardInterrupt")])
def test_a_descent_that_exits_is_an_error_of_its_push_not_the_end_of_the_shard(start_server, descent, raised):
    ps = start_server({"w": np.zeros(4)}, shards=1)
    address = ps.open_session(descent)
    try:
        with Client(address, timeout=10) as client:
            client.push({"w": np.ones(4)})
            with pytest.raises(RequestError, match=f"DESCENT: descent raised {raised}"):
                client.flush()
            client.push({"w": np.ones(4)})  # the shard still serves
            with pytest.raises(RequestError, match="DESCENT"):
                client.flush()
    finally:
        ps.close_session(address)
    with Client(ps.address, timeout=10) as client:
        client.push({"w": np.ones(4)})
        assert client.pull()["w"].tolist() == [1.0] * 4


def test_a_job_sees_values_the_driver_wrote_before_it_opened(start_server):
    """The shards bound their values to refuse a push whose sums would overflow without reading the
    parameter each time; values written through the live view before a job opens count for that job."""
    ps = start_server({"w": np.zeros((100, 8), np.float32)}, shards=2)
    ps.params["w"][0] = 3.3e38  # the largest float32 is 3.4e38
    address = ps.open_session(None)
    try:
        with Client(address, timeout=10) as client:
            client.push({"w": (np.array([0, 1]), np.full((2, 8), 2e37, np.float32))})
            with pytest.raises(RequestError, match="to infinity"):
                client.flush()
            client.push({"w": (np.array([1]), np.full((1, 8), 2e37, np.float32))})
    finally:
        ps.close_session(address)
    np.testing.assert_array_equal(ps.params["w"][:2], np.float32([[3.3e38] * 8, [2e37] * 8]))


def test_a_closed_session_is_refused_and_the_server_itself_still_served(start_server):
    ps = start_server({"a": np.zeros(4)}, shards=2)
    address = ps.open_session(None)
    with Client(address, timeout=10) as client:
        client.push({"a": np.ones(4)})
        client.flush()
        ps.close_session(address)
        client.push({"a": np.ones(4)})
        with pytest.raises(RequestError, match="does not serve.*a job that has ended"):
            client.flush()
    with Client(ps.address, timeout=10) as client:
        client.push({"a": np.ones(4)})
    assert ps.params["a"].tolist() == [2.0] * 4


def test_sessions_opened_from_many_threads_at_once_all_work(start_server):
    """Commands go to the shards over pipes: a line longer than the pipe's buffer, written by two threads at
    once, would interleave with another and corrupt both."""
    ps = start_server({"a": np.zeros(4)}, shards=2)
    big = np.arange(100_000, dtype=np.float64)  # pickled with the closure: an 800 KB command line

    def descent(model, update):
        model.a += update["a"] * (big[1] - big[0])

    failures = []

    def open_and_push():
        try:
            for _ in range(3):
                address = ps.open_session(descent)
                with Client(address, timeout=10) as client:
                    client.push({"a": np.ones(4)})
                ps.close_session(address)
        except Exception as error:  # reported below, with what went wrong
            failures.append(error)

    threads = [threading.Thread(target=open_and_push) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not failures and not any(thread.is_alive() for thread in threads), failures
    assert ps.params["a"].tolist() == [18.0] * 4
    ps.check()  # every shard still up


def slow_add(model, update):
    np.sort(np.random.default_rng(0).random(300_000))  # what a costly descent takes: the queue stays full
    model.w += update["w"]


def test_sessions_open_and_close_while_clients_keep_the_shard_busy(start_server):
    """A shard reads its commands between two requests, not once its queue runs dry: a running job's clients
    may never let it. And once close_session returns, nothing sent to the closed job is applied."""
    ps = start_server({"w": np.zeros(4)}, shards=1)
    ps.start_timeout = 5  # for the commands below (the shard started under the default)
    job = ps.open_session(slow_add)
    stop, refused = threading.Event(), []

    def push_until_stopped():
        try:
            with Client(job, timeout=60) as client:
                while not stop.is_set():
                    client.push({"w": np.ones(4)})
        except RequestError as error:  # the pushes sent after the close, raised by the closing flush
            refused.append(error)

    threads = [threading.Thread(target=push_until_stopped) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        deadline = time.monotonic() + 60
        while ps.params["w"][0] < 20 and time.monotonic() < deadline:
            time.sleep(0.05)  # until the job has been applying pushes for a while, with its queue full
        assert ps.params["w"][0] >= 20
        other = ps.open_session(None)  # within start_timeout, though the queue never ran dry
        ps.close_session(other)
        ps.close_session(job)
        closed_with = ps.params["w"].copy()
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    assert not any(thread.is_alive() for thread in threads)
    assert len(refused) == 2 and all("a job that has ended" in str(error) for error in refused), refused
    np.testing.assert_array_equal(ps.params["w"], closed_with)


def test_an_answer_that_came_too_late_is_not_taken_for_a_later_commands(start_server, tmp_path):
    """A command a busy shard did not answer within start_timeout fails as such (the shard is alive), and its
    late answer, still in the pipe, is passed over by the commands after it."""
    started, gate = tmp_path / "started", tmp_path / "gate"

    def wait_for_gate(model, update):
        started.touch()
        deadline = time.monotonic() + 60
        while not gate.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        model.a += update["a"]

    ps = start_server({"a": np.zeros(4)}, shards=1)
    ps.start_timeout = 1  # for the commands below (the shard started under the default)
    job = ps.open_session(wait_for_gate)
    with Client(job, timeout=60) as client:
        client.push({"a": np.ones(4)})
        deadline = time.monotonic() + 60
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.01)  # until the shard is inside the descent
        with pytest.raises(DeepDistError, match=r"shard 0 \(pid \d+\) is running but did not open a session "
                                                r"within 1 s: busy"):
            ps.open_session(None)
        gate.touch()
        client.flush()
    # The open's answer, and that of the close sent after it failed, came late: both OK. The next command's
    # own answer is an error, and it is that one the server reads.
    with pytest.raises(DeepDistError, match="cannot be loaded"):
        ps.open_session(FailsToLoad())
    assert ps.params["a"].tolist() == [1.0] * 4
