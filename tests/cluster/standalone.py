"""A Spark standalone cluster (one master, N workers) started from the pyspark pip package, for tests.

The pip package ships ``sbin/spark-daemon.sh`` but not ``start-master.sh`` / ``start-worker.sh``, so the
daemons are started as the full distribution's scripts would start them:

    spark-daemon.sh start org.apache.spark.deploy.master.Master 1 --host H --port P --webui-port W
    spark-daemon.sh start org.apache.spark.deploy.worker.Worker I --host H --cores 1 --memory 2g spark://H:P

Everything the cluster writes (PID files, logs, worker and local dirs, an empty conf dir) lives under one
folder, and ``stop`` ends every process it started whatever state they are in: first ``spark-daemon.sh stop``,
then SIGKILL for any daemon still named in a PID file, then SIGKILL for any process (executor JVMs, Python
workers) whose working directory or command line lies inside that folder. Processes are ended by pid only.

The daemons run with a scrubbed environment (no PYTHONPATH, PYSPARK_*, VIRTUAL_ENV), so executors cannot
borrow the test's interpreter or import path: they see only what a job ships to them.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

MASTER = "org.apache.spark.deploy.master.Master"
WORKER = "org.apache.spark.deploy.worker.Worker"
POLL_INTERVAL = 0.2  # seconds between checks of a condition that has a deadline
# Variables that would let executors or the driver find packages the job did not ship.
SCRUBBED = ("PYTHONPATH", "PYTHONHOME", "PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON", "VIRTUAL_ENV", "SPARK_HOME",
            "SPARK_CONF_DIR", "PYTHONSTARTUP", "PYTHONUSERBASE", "SPARK_NO_DAEMONIZE")


def scrubbed_env(**extra) -> dict:
    """This process's environment without anything that would let a child import this work tree's deepdist
    or borrow this interpreter's packages."""
    env = {key: value for key, value in os.environ.items() if key not in SCRUBBED}
    env.update(extra)
    return env


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def free_port_run(count: int) -> int:
    """A port such that it and the next count - 1 are free on 127.0.0.1 (for spark.deepdist.port)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
        if base + count >= 65536:
            continue
        sockets = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                sockets.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError("no run of free ports")


def java_available() -> bool:
    try:
        return subprocess.run(["java", "-version"], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


class Standalone:
    """``Standalone(root).start(workers=2)``; ``.url`` is the master URL; ``.stop()`` always cleans up."""

    def __init__(self, root, host: str = "127.0.0.1", cores: int = 1, memory: str = "2g"):
        self.root = Path(root).resolve()
        self.host, self.cores, self.memory = host, cores, memory
        self.home = spark_home()
        self.dirs = {name: self.root / name for name in ("pids", "logs", "work", "local", "conf")}
        for path in self.dirs.values():
            path.mkdir(parents=True, exist_ok=True)
        self.port = self.webui_port = None
        self.instances = []        # (class, instance number) of every daemon started
        self.start_seconds = None  # from the first daemon's start to every worker registered

    @property
    def url(self) -> str:
        return f"spark://{self.host}:{self.port}"

    def env(self, local_ip=None, **extra) -> dict:
        env = scrubbed_env()
        env.update(SPARK_HOME=str(self.home), SPARK_CONF_DIR=str(self.dirs["conf"]),
                   SPARK_PID_DIR=str(self.dirs["pids"]), SPARK_LOG_DIR=str(self.dirs["logs"]),
                   SPARK_WORKER_DIR=str(self.dirs["work"]), SPARK_LOCAL_DIRS=str(self.dirs["local"]),
                   SPARK_LOCAL_IP=local_ip or self.host, SPARK_IDENT_STRING="deepdist-test")
        env.update(extra)
        return env

    def daemon(self, action: str, cls: str, instance: int, args=(), env=None, prefix=()) -> None:
        command = list(prefix) + [str(self.home / "sbin" / "spark-daemon.sh"), action, cls, str(instance)]
        result = subprocess.run(command + [str(a) for a in args], env=env or self.env(), cwd=self.root,
                                capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"spark-daemon.sh {action} {cls} {instance} failed ({result.returncode}):\n"
                               f"{result.stdout}\n{result.stderr}\n{self.logs()}")

    def start(self, workers: int = 2) -> "Standalone":
        started = time.monotonic()
        self.start_master()
        for instance in range(1, workers + 1):
            self.start_worker(instance)
        self.wait_workers(workers)
        self.start_seconds = time.monotonic() - started
        return self

    def start_master(self) -> None:
        self.port, self.webui_port = free_port(self.host), free_port(self.host)
        self.instances.append((MASTER, 1))
        self.daemon("start", MASTER, 1, ["--host", self.host, "--port", self.port,
                                         "--webui-port", self.webui_port])

    def start_worker(self, instance: int, host=None, prefix=()) -> None:
        """Worker ``instance`` (1, 2, ...) listening on ``host``; ``prefix`` wraps the command (e.g.
        ``ip netns exec NS`` to run it in a network namespace)."""
        host = host or self.host
        self.instances.append((WORKER, instance))
        # Free ports are probed on the host; inside a namespace every port is free anyway.
        args = ["--host", host, "--cores", self.cores, "--memory", self.memory,
                "--webui-port", free_port(self.host) if not prefix else 8081 + instance,
                "--work-dir", self.dirs["work"] / f"worker-{instance}", self.url]
        self.daemon("start", WORKER, instance, args, env=self.env(local_ip=host), prefix=prefix)

    def status(self) -> dict:
        with urllib.request.urlopen(f"http://{self.host}:{self.webui_port}/json/", timeout=5) as response:
            return json.load(response)

    def wait_workers(self, count: int, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.status().get("aliveworkers", 0) >= count:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{count} workers did not register with {self.url} within {timeout:g} s:\n"
                                   f"{self.logs()}")
            time.sleep(POLL_INTERVAL)

    def logs(self, tail: int = 40) -> str:
        out = []
        for path in sorted(self.dirs["logs"].glob("*.out")):
            lines = path.read_text(errors="replace").splitlines()[-tail:]
            out.append(f"--- {path.name}\n" + "\n".join(lines))
        return "\n".join(out)

    def stop(self) -> None:
        """Stop every daemon, then kill whatever is left (by pid): never raises, never leaves a JVM behind."""
        for cls, instance in reversed(self.instances):
            try:
                self.daemon("stop", cls, instance)
            except Exception:  # noqa: BLE001 - the kills below still run
                pass
        for pid_file in self.dirs["pids"].glob("*.pid"):  # daemons whose stop failed
            try:
                kill(int(pid_file.read_text().strip()))
            except (OSError, ValueError):
                pass
        wait_until_gone(self.root, 10)  # let stopped workers end their executors themselves
        for pid in processes_under(self.root):
            kill(pid)
        wait_until_gone(self.root, 5)


def wait_until_gone(root: Path, seconds: float) -> None:
    """Poll until no process lies under ``root``, for at most ``seconds``."""
    deadline = time.monotonic() + seconds
    while processes_under(root) and time.monotonic() < deadline:
        time.sleep(POLL_INTERVAL)


def kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def processes_under(root: Path) -> list:
    """Pids of the processes whose working directory or command line lies inside ``root`` (not this one)."""
    root, found = str(root), []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if cwd == root or cwd.startswith(root + "/") or root + "/" in cmdline:
            found.append(int(entry.name))
    return found


def spark_submit(cluster: Standalone, args, timeout: float, env=None, cwd=None) -> subprocess.CompletedProcess:
    """Run ``spark-submit --master <cluster> ARGS`` with the cluster's scrubbed environment; adds ``seconds``.

    On timeout the whole process group (spark-submit's JVM, the driver's Python, its shards) is killed.
    """
    command = [str(cluster.home / "bin" / "spark-submit"), "--master", cluster.url, "--deploy-mode", "client"]
    command += [str(a) for a in args]
    started = time.monotonic()
    process = subprocess.Popen(command, env=env or cluster.env(), cwd=cwd or cluster.root, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        raise AssertionError(f"spark-submit did not finish within {timeout:g} s\n--- stdout\n{stdout}\n"
                             f"--- stderr\n{stderr[-20000:]}") from None
    finally:
        try:  # whatever the driver left in its process group (it owns nothing else)
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    result = subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
    result.seconds = time.monotonic() - started
    return result


def recipe(packed, *conf):
    """The spark-submit options of docs/cluster.md (deploy mode client)."""
    options = ["--archives", f"{packed.archive}#environment",
               "--conf", "spark.pyspark.python=./environment/bin/python",
               "--conf", f"spark.pyspark.driver.python={packed.python}",
               "--conf", "spark.executor.memory=1g",
               "--conf", "spark.ui.enabled=false"]
    for setting in conf:
        options += ["--conf", setting]
    return options


def parse_result(stdout: str) -> dict:
    lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
    assert len(lines) == 1, stdout
    return json.loads(lines[0][len("RESULT "):])
