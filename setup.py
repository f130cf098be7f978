"""Only the compiled-extension list lives here; everything else is in pyproject.toml.

The Cython interpreter core, `runtime/_interp.pyx`, is built as `aobc.runtime._interp`;
`AOBC_PUREPYTHON=1` skips building it (the runtime then uses the pure-Python `interp_py`).
A build that wants the extension and cannot make it fails loudly rather than install a
slower runtime without saying so.
"""

from __future__ import annotations

import os

from setuptools import Extension, setup

ext_modules: list[Extension] = []
if not os.environ.get("AOBC_PUREPYTHON"):
    from Cython.Build import cythonize

    ext_modules = cythonize(
        [
            Extension(
                "aobc.runtime._interp",
                ["runtime/_interp.pyx"],
                # Listed again so an sdist carries the source, not only the generated .c.
                depends=["runtime/_interp.pyx"],
            )
        ],
        compiler_directives={"language_level": 3, "embedsignature": True},
    )

setup(ext_modules=ext_modules)
