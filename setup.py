"""Build script for the one compiled module; all metadata lives in pyproject.toml."""
from Cython.Build import cythonize
from setuptools import Extension, setup

extensions = [
    Extension(
        "deepdist._core",
        ["deepdist/_core.pyx"],
        # No -march=native: the wheel must run on every node of a cluster.  The
        # one loop that lost speed to baseline SIMD (the dense axpy) picks an
        # AVX2 build of itself when the module loads; see _core.pyx.
        # -ffp-contract=off stops alpha * x + y from becoming a fused
        # multiply-add on FMA targets (aarch64, ppc64le), which would round
        # differently from numpy's dst += alpha * src.
        extra_compile_args=["-O3", "-ffp-contract=off"],
    )
]

setup(ext_modules=cythonize(extensions, language_level=3))
