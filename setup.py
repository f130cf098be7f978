"""Only the compiled-extension list lives here; everything else is in pyproject.toml.

The Cython interpreter core is added by the runtime; `AOBC_PUREPYTHON=1` skips building it.
"""

from __future__ import annotations

from setuptools import setup

setup()
