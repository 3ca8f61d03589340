"""Build the Cython kernels.

All Cython compiler directives live here and nowhere else.  ``FUSEDRNN_DEBUG=1`` turns bounds
checks on; ``FUSEDRNN_NATIVE=1`` adds ``-march=native`` for local experiments (never in the
default build: the AVX-512 / AVX2 code paths are chosen at run time, see kernels/fr_isa.h);
``FUSEDRNN_OPENMP=0`` builds without OpenMP (the time loops then run on one thread).
"""
import os
import sys

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

DEBUG = os.environ.get("FUSEDRNN_DEBUG", "0") == "1"
NATIVE = os.environ.get("FUSEDRNN_NATIVE", "0") == "1"
# OpenMP threads share each time step between cores; macOS' clang has no OpenMP by default.
OPENMP = os.environ.get("FUSEDRNN_OPENMP", "0" if sys.platform == "darwin" else "1") == "1"

directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": False,
    "initializedcheck": DEBUG,
    "cdivision": True,
    "embedsignature": True,
}


class BuildExt(build_ext):
    """Pick optimisation flags by compiler family."""

    def build_extensions(self):
        ctype = self.compiler.compiler_type
        link = []
        if ctype == "msvc":
            args = ["/O2", "/openmp"]
        else:
            args = ["-O3", "-fno-math-errno", "-fno-trapping-math", "-Wno-unused-function"]
            if NATIVE:
                args.append("-march=native")
            if DEBUG:
                args = ["-O0", "-g"]
            if OPENMP:
                args.append("-fopenmp")
                link.append("-fopenmp")
        for ext in self.extensions:
            ext.extra_compile_args = list(ext.extra_compile_args) + args
            ext.extra_link_args = list(ext.extra_link_args) + link
        super().build_extensions()


def ext(name, source):
    return Extension(
        f"fusedrnn.{name}",
        [source],
        include_dirs=[np.get_include(), "kernels"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_9_API_VERSION")],
    )


# One extension: every cell's kernels share the time loop, the packed GEMM and the one ISA
# switch (kernels/fr_isa.h), so each is compiled once.
extensions = [ext("_kernels", "kernels/_kernels.pyx")]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives=directives,
        include_path=["kernels"],
    ),
    cmdclass={"build_ext": BuildExt},
)
