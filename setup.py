"""Build script for the compiled modules; all metadata lives in pyproject.toml."""
import numpy
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
    ),
    Extension(
        "deepdist._word2vec_inner",
        ["deepdist/_word2vec_inner.pyx"],
        include_dirs=[numpy.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=["-O3"],
    ),
]

# deepdist/_pxd: the declarations of gensim's word2vec kernels that _word2vec_inner cimports (see there)
setup(ext_modules=cythonize(extensions, language_level=3, include_path=["deepdist/_pxd"]))
