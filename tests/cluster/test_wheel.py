"""The wheel: ``pip wheel`` builds deepdist with its compiled modules, and a fresh venv that installs it (and
nothing from this work tree) runs a parameter server."""
import json
import subprocess
import sys
import zipfile

import pytest
from standalone import scrubbed_env

pytestmark = pytest.mark.cluster

PUSH_PULL = r"""
import json, sys
import numpy as np
import deepdist, deepdist._core, deepdist.kernels, deepdist.word2vec
from deepdist import Client, ParameterServer

params = {"w": np.zeros((50_000, 8), np.float32), "b": np.zeros(3)}
with ParameterServer(params, shards=2) as ps:
    with Client(ps.address, timeout=10) as client:
        client.push({"w": (np.array([0, 49_999, 0]), np.ones((3, 8), np.float32))})
        client.push({"b": np.array([1.0, 2.0, 3.0])}, scale=-0.5)
        pulled = client.pull()
print(json.dumps({
    "deepdist": deepdist.__file__, "core": deepdist._core.__file__, "kernels": deepdist.kernels.IMPLEMENTATION,
    "word2vec_batch_loop": getattr(deepdist.word2vec._train_batch, "__module__", None),
    "prefix": sys.prefix, "endpoints": list(ps.address.endpoints),
    "pulled_w": [float(pulled["w"][0, 0]), float(pulled["w"][49_999, 0]), float(pulled["w"][1:49_999].sum())],
    "pulled_b": pulled["b"].tolist(),
    "final_w": [float(params["w"][0, 0]), float(params["w"][49_999, 7])],
}))
"""


def test_pip_wheel_contains_the_compiled_modules(packed):
    assert packed.wheel.name.startswith("deepdist-0.1.0-cp3")          # a platform wheel, not py3-none-any
    assert "linux" in packed.wheel.name
    names = zipfile.ZipFile(packed.wheel).namelist()
    for module in ("_core", "_word2vec_inner"):
        built = [name for name in names if name.startswith(f"deepdist/{module}.") and name.endswith(".so")]
        assert len(built) == 1, names
    assert {"deepdist/__init__.py", "deepdist/shard.py", "deepdist/word2vec.py"} <= set(names)
    assert not any(name.startswith(("tests/", "bench/", "build/")) for name in names)


def test_a_fresh_venv_with_the_wheel_serves_and_trains(packed, tmp_path):
    # Run from an empty folder with no PYTHONPATH: only the venv's site-packages can provide deepdist.
    result = subprocess.run([str(packed.python), "-c", PUSH_PULL], cwd=tmp_path, env=scrubbed_env(),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    site = str(packed.env / "lib")
    assert report["deepdist"].startswith(site) and report["core"].startswith(site)
    assert report["core"].endswith(".so")
    assert report["kernels"] == "cython"
    assert report["word2vec_batch_loop"] == "deepdist._word2vec_inner"  # it fits the venv's gensim from PyPI
    assert report["prefix"] == str(packed.env)
    assert [e.startswith("tcp://127.0.0.1:") for e in report["endpoints"]] == [True, True]
    assert report["pulled_w"] == [2.0, 1.0, 0.0]           # a repeated row accumulates
    assert report["pulled_b"] == [-0.5, -1.0, -1.5]
    assert report["final_w"] == [2.0, 1.0]                 # the final values came back to the caller's arrays


def test_the_venv_was_made_without_this_interpreters_packages(packed):
    config = (packed.env / "pyvenv.cfg").read_text()
    assert "include-system-site-packages = false" in config
    result = subprocess.run([str(packed.python), "-c", "import pyspark"], env=scrubbed_env(),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0  # pyspark is this interpreter's, not the venv's: the venv stands alone
    assert packed.archive.stat().st_size > 10_000_000
    print(f"pack_env.sh took {packed.seconds:.1f} s; archive {packed.archive.stat().st_size / 1e6:.0f} MB",
          file=sys.stderr)
