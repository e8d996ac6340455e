"""Importing an engine library's native bindings without its package `__init__`.

Both libraries' `__init__` modules import far more than chatterm uses: llama-cpp-python's
pulls in numpy, jinja2 and its high-level `Llama` (0.14 s against 0.03 s for the ctypes
bindings alone), ctransformers' pulls in huggingface_hub for hub downloads chatterm never
does (0.27 s; docs/engines.md).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from typing import Any


def import_bare(package: str, submodule: str) -> Any | None:
    """`package.submodule` without running `package/__init__.py`; None when the package
    is not installed.

    A bare stand-in for the package is registered only while the submodule imports.
    Removing it afterwards lets a later `import package` run the real `__init__`, which
    then reuses the submodule already in `sys.modules` (one copy of the native library)."""
    name = f"{package}.{submodule}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    if package in sys.modules:  # imported in full already
        return importlib.import_module(name)
    bare = types.ModuleType(package)
    bare.__path__ = list(spec.submodule_search_locations)
    bare.__spec__ = spec
    sys.modules[package] = bare
    try:
        return importlib.import_module(name)
    finally:
        if sys.modules.get(package) is bare:
            del sys.modules[package]
