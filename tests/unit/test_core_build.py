"""Compiled modules run only while they are current (pypbx.core_build).

A stand-in package in a temporary directory, with files named like this interpreter's
extension modules, is enough for `decide`: it reads names and times, never loads them.
The last test checks the real package in a fresh interpreter.
"""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

from pypbx.core_build import compiled_modules, decide

SUFFIX = EXTENSION_SUFFIXES[0]


def package(tmp_path: Path, *, stale: bool = False) -> Path:
    """pkg/sub/mod.py and pkg/top.py with their builds; the build of mod older if `stale`."""
    root = tmp_path / "pkg"
    (root / "sub").mkdir(parents=True)
    for name in ("sub/mod", "top"):
        (root / f"{name}.py").write_text("VALUE = 'source'\n")
        (root / f"{name}{SUFFIX}").write_bytes(b"")
        os.utime(root / f"{name}.py", (1000, 1000))
        os.utime(root / f"{name}{SUFFIX}", (2000, 2000))
    if stale:
        os.utime(root / "sub/mod.py", (3000, 3000))
    return root


def test_current_builds_run(tmp_path: Path) -> None:
    root = package(tmp_path)
    assert sorted(compiled_modules(root)) == ["pkg.sub.mod", "pkg.top"]
    assert decide(root, pure=False) == ("compiled (2 modules)", None)


def test_one_changed_source_makes_every_module_run_from_source(tmp_path: Path) -> None:
    root = package(tmp_path, stale=True)
    state, finder = decide(root, pure=False)
    assert state == (
        "interpreted (pkg.sub.mod changed since the build; `make install` compiles it again)"
    )
    assert finder is not None
    for name in ("pkg.sub.mod", "pkg.top"):  # the current one too: no mix
        spec = finder.find_spec(name, None)
        assert spec is not None and spec.origin == str(root / f"{name[4:].replace('.', '/')}.py")
    assert finder.find_spec("pkg.other", None) is None  # anything else: the usual finders


def test_the_sources_can_be_asked_for(tmp_path: Path) -> None:
    state, finder = decide(package(tmp_path), pure=True)
    assert state == "interpreted (PYPBX_PURE_PYTHON=1)" and finder is not None


def test_no_build_no_finder(tmp_path: Path) -> None:
    root = package(tmp_path)
    for build in root.rglob(f"*{SUFFIX}"):
        build.unlink()
    (root / "orphan.cpython-399-x86_64-linux-gnu.so").write_bytes(b"")  # another Python's
    assert decide(root, pure=False) == (
        "interpreted (not compiled: scripts/compile_core.py)",
        None,
    )


def test_the_package_runs_what_it_says() -> None:
    """In a fresh interpreter, with PYPBX_PURE_PYTHON=1 and without: the file behind
    pypbx.sip.parser matches pypbx.CORE, whether or not this tree was compiled."""
    probe = "import pypbx, pypbx.sip.parser as p; print(pypbx.CORE); print(p.__file__)"
    for pure in ("1", "0"):
        env = {**os.environ, "PYPBX_PURE_PYTHON": pure}
        state, origin = subprocess.run(
            [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
        ).stdout.splitlines()
        if pure == "1":
            assert state.startswith("interpreted (")
        assert origin.endswith(SUFFIX if state.startswith("compiled (") else "parser.py")
