"""Whether pypbx's compiled modules run, or their sources (see scripts/compile_core.py).

Why: a compiled module shadows its source, so an edited (or newly checked out) source would
silently not run until the next build. When any compiled module is older than its source,
or PYPBX_PURE_PYTHON=1 is set, every compiled module is loaded from its source instead: all
of them, since compiled modules call each other directly and a mix would still run old code.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Sequence
from importlib.abc import MetaPathFinder
from importlib.machinery import EXTENSION_SUFFIXES, ModuleSpec
from pathlib import Path
from types import ModuleType

PACKAGE_DIR = Path(__file__).resolve().parent
# In the state of a build older than its source: the words a log raises to a warning for.
STALE = "changed since the build"


class _SourcesFirst(MetaPathFinder):
    """Finds the named modules' sources ahead of their extension modules."""

    def __init__(self, sources: dict[str, Path]) -> None:
        self._sources = sources

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None = None,
        target: ModuleType | None = None,
    ) -> ModuleSpec | None:
        source = self._sources.get(fullname)
        return None if source is None else importlib.util.spec_from_file_location(fullname, source)


def compiled_modules(package_dir: Path = PACKAGE_DIR) -> dict[str, tuple[Path, Path]]:
    """Module name -> (its extension module, its source), for this interpreter's builds."""
    suffix = EXTENSION_SUFFIXES[0]  # e.g. .cpython-311-x86_64-linux-gnu.so
    found: dict[str, tuple[Path, Path]] = {}
    for extension in package_dir.rglob(f"*{suffix}"):
        source = extension.with_name(extension.name.removesuffix(suffix) + ".py")
        if source.exists():
            parts = source.relative_to(package_dir.parent).with_suffix("").parts
            found[".".join(parts)] = (extension, source)
    return found


def decide(package_dir: Path, pure: bool) -> tuple[str, MetaPathFinder | None]:
    """What runs ("compiled (N modules)" or "interpreted (why)"), and the finder that makes
    the sources run, when they must."""
    compiled = compiled_modules(package_dir)
    if not compiled:
        return "interpreted (not compiled: scripts/compile_core.py)", None
    if pure:
        reason = "PYPBX_PURE_PYTHON=1"
    else:
        stale = sorted(
            name
            for name, (extension, source) in compiled.items()
            if source.stat().st_mtime > extension.stat().st_mtime
        )
        if not stale:
            return f"compiled ({len(compiled)} modules)", None
        reason = f"{stale[0]} {STALE}; `make install` compiles it again"
    finder = _SourcesFirst({name: pair[1] for name, pair in compiled.items()})
    return f"interpreted ({reason})", finder


def choose() -> str:
    """Run pypbx's compiled modules if they are all current, else their sources; says which."""
    state, finder = decide(PACKAGE_DIR, os.environ.get("PYPBX_PURE_PYTHON") == "1")
    if finder is not None:
        sys.meta_path.insert(0, finder)
    return state
