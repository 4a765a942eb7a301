"""Build of the optional compiled part: the fused CPU selective-scan kernel (plain C, no torch headers).

Everything else about the package is declared in pyproject.toml. The extension is ``optional``: a
machine without a C compiler still installs the package, and ``caduceus_vep.model.scan`` then falls
back to its PyTorch scan (with a one-time warning).
"""

import sys

from setuptools import Extension, setup

if sys.platform == "win32":
    compile_args, link_args = ["/O2"], []
else:
    compile_args, link_args = ["-O3", "-pthread"], ["-pthread"]

setup(
    ext_modules=[
        Extension(
            "caduceus_vep.model._scan_kernel",
            sources=["caduceus_vep/model/_scan_kernel.c"],
            extra_compile_args=compile_args,
            extra_link_args=link_args,
            optional=True,
        )
    ]
)
