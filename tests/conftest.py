"""Fixtures that start real shard processes and real sockets, and clean them up even when a test fails."""
import os
import threading

import pytest
import zmq

from deepdist import ParameterServer, shm

RECV_TIMEOUT = 10.0  # seconds: no test waits longer than this for one reply
SPARK_JOB_TIMEOUT = 300.0  # seconds a test's Spark jobs may run, well inside pytest-timeout's 600


@pytest.fixture
def no_leftover_shm():
    """Fails the test if it leaves deepdist shared-memory segments behind (segments are named after the
    creating process, so other processes on the machine, such as a benchmark, do not count)."""
    mine = f"{shm.PREFIX}{os.getpid()}-"
    before = set(shm.leftover(mine))
    yield
    left = set(shm.leftover(mine)) - before
    assert not left, f"shared memory left behind: {sorted(left)}"


@pytest.fixture
def start_server(no_leftover_shm):
    """``start_server(params, **kwargs)`` -> a started ParameterServer, stopped at teardown whatever happens."""
    servers = []

    def start(params, **kwargs):
        kwargs.setdefault("stop_timeout", 5.0)
        server = ParameterServer(params, **kwargs).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop(raise_dead=False)


@pytest.fixture
def zmq_socket():
    """``zmq_socket(kind)`` -> a socket closed with linger 0 at teardown (pyzmq's own test pattern)."""
    context = zmq.Context()
    sockets = []

    def make(kind=zmq.DEALER):
        socket = context.socket(kind)
        socket.linger = 0
        socket.rcvtimeo = socket.sndtimeo = int(RECV_TIMEOUT * 1000)  # a blocking call fails, never hangs
        sockets.append(socket)
        return socket

    yield make
    for socket in sockets:
        socket.close(linger=0)
    context.term()


@pytest.fixture
def recv():
    """``recv(socket)`` -> one multipart message, or an assertion error after RECV_TIMEOUT: never a hang."""
    def receive(socket, timeout=RECV_TIMEOUT):
        assert socket.poll(timeout * 1000, zmq.POLLIN), f"no message within {timeout} s"
        return socket.recv_multipart()
    return receive


@pytest.fixture(scope="session")
def spark_context(tmp_path_factory):
    """One local[2] SparkContext for the whole session (starting one costs seconds), stopped at the end."""
    import sys

    pyspark = pytest.importorskip("pyspark")
    with pytest.MonkeyPatch.context() as environment:  # the variables below are restored at the end
        environment.setenv("PYSPARK_PYTHON", sys.executable)  # executors must run the interpreter with deepdist
        # Test modules define gradient functions that executors unpickle by reference: importable there too.
        tests = os.path.dirname(os.path.abspath(__file__))
        environment.setenv("PYTHONPATH", os.pathsep.join(
            [os.path.join(tests, "integration"), tests] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
        if "SPARK_LOCAL_IP" not in os.environ:
            environment.setenv("SPARK_LOCAL_IP", "127.0.0.1")
        conf = (pyspark.SparkConf().setMaster("local[2]").setAppName("deepdist-tests")
                .set("spark.ui.enabled", "false").set("spark.ui.showConsoleProgress", "false")
                .set("spark.local.dir", str(tmp_path_factory.mktemp("spark-local"))))
        context = pyspark.SparkContext(conf=conf)
        try:
            context.setLogLevel("ERROR")
            yield context
        finally:
            context.stop()


@pytest.fixture(autouse=True)
def spark_jobs_time_out(request):
    """Cancels the Spark jobs of a test still running after SPARK_JOB_TIMEOUT seconds: its collect() then
    raises and the test fails. pytest-timeout cannot end such a test: its exception lands inside py4j's wait
    for the job's answer, and py4j's next call on that connection waits for the same answer, for ever.
    Cancelling also makes Spark kill the tasks' Python workers, whatever they are doing."""
    if "spark_context" not in request.fixturenames:
        yield
        return
    context = request.getfixturevalue("spark_context")
    timer = threading.Timer(SPARK_JOB_TIMEOUT, context.cancelAllJobs)
    timer.daemon = True
    timer.start()
    yield
    timer.cancel()
