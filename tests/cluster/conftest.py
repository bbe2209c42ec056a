"""Fixtures for the tests past one machine: a wheel in a packed venv, a Spark standalone cluster, network
namespaces. Every fixture cleans up in its finalizer, whatever the test did."""
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from standalone import Standalone, java_available, scrubbed_env  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "cluster: slow end-to-end tests (wheel in a fresh venv, Spark standalone cluster, network "
                   "namespaces); they run by default, deselect with -m 'not cluster'")


class Packed:
    """What scripts/pack_env.sh made: the wheel, the venv holding it, and that venv packed for Spark."""

    def __init__(self, root: Path, seconds: float, log: str):
        self.root, self.seconds, self.log = root, seconds, log
        self.wheel = next((root / "dist").glob("deepdist-*.whl"))
        self.env = root / "env"
        self.python = self.env / "bin" / "python"
        self.archive = root / "env.tar.gz"


@pytest.fixture(scope="session")
def packed(tmp_path_factory):
    """scripts/pack_env.sh: ``pip wheel`` of this tree, a fresh venv with the wheel (numpy, pyzmq and gensim
    from PyPI), packed with venv-pack. About a minute on the first run (compiling _core, downloads)."""
    root = tmp_path_factory.mktemp("packed")
    started = time.monotonic()
    result = subprocess.run(["bash", str(REPO / "scripts" / "pack_env.sh"), str(root)],
                            env=scrubbed_env(PYTHON=sys.executable),
                            cwd=root, capture_output=True, text=True, timeout=500)
    log = result.stdout + result.stderr
    assert result.returncode == 0, f"scripts/pack_env.sh failed:\n{log[-8000:]}"
    packed = Packed(root, time.monotonic() - started, log)
    yield packed
    shutil.rmtree(root, ignore_errors=True)  # 400 MB: do not keep it among pytest's temporary folders


@pytest.fixture(scope="session")
def java():
    pytest.importorskip("pyspark")
    if not java_available():
        pytest.skip("Java is not installed: Spark cannot start")


@pytest.fixture(scope="module")
def cluster(java, tmp_path_factory):
    """A Spark standalone master and two workers (1 core, 2 GB each) on 127.0.0.1, stopped at teardown."""
    root = tmp_path_factory.mktemp("standalone")
    cluster = Standalone(root, host="127.0.0.1")
    try:
        cluster.start(workers=2)
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
