"""aobc: a compiler and runtime for agentic workflows."""

from __future__ import annotations

import os as _os

__version__ = "0.1.0"

# `runtime/`, `grammar/` and `wasm_passes/` sit beside this package in the repository and
# are installed as `aobc.runtime`, `aobc.grammar` and `aobc.wasm_passes` by setuptools'
# package-dir mapping. When aobc is imported straight from a checkout (`python -m aobc`
# in the repository root), that mapping is not in effect, so let the package look for its
# subpackages in the repository root as well. Installed copies never take this branch.
_root = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
if _os.path.isfile(_os.path.join(_root, "grammar", "aob.lark")) and _os.path.isfile(
    _os.path.join(_root, "pyproject.toml")
):
    __path__.append(_root)
