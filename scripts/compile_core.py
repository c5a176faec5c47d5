#!/usr/bin/env python3
"""Compile pypbx's SIP core and its REGISTER path to C extensions with mypyc.

Why: a registration storm spends its CPU evenly over parsing, digest, transactions and the
registrar (no single hot spot is left to rewrite), and this code is fully typed already.
mypyc (part of mypy) turns it into C that skips the interpreter's dispatch: the in-process
REGISTER benchmark (bench/register_path.py) measured about a quarter less CPU per
registration. The sources stay the truth: `pypbx/__init__.py` runs them instead of the
compiled modules when these are older than the sources, or when PYPBX_PURE_PYTHON=1.

The compiled modules (`*.cpython-*.so`, and one shared `*__mypyc*.so` in src/) sit next to
their sources, where Python's import system prefers them. `make install` runs this.

    scripts/compile_core.py [--jobs N]   build (needs mypy and a C compiler)
    scripts/compile_core.py --clean      remove what a build left; the sources run again
    scripts/compile_core.py --list       the compiled sources, for the Makefile
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
BUILD = ROOT / "build" / "mypyc"
# The sans-I/O SIP core, and what a REGISTER runs through besides it. Only these: every
# compiled module costs build time, and a compiled function refuses arguments of another
# type than annotated (duck-typed stand-ins), so the set grows where a profile asks.
COMPILED = (
    "pypbx/sip/*.py",
    "pypbx/net/stack.py",
    "pypbx/pbx/auth.py",
    "pypbx/pbx/registrar.py",
    "pypbx/pbx/replies.py",
    "pypbx/store/binding_writer.py",
)


def sources() -> list[str]:
    """The compiled sources, relative to src/ (package __init__ files stay interpreted)."""
    found: list[str] = []
    for pattern in COMPILED:
        found += sorted(
            str(path.relative_to(SRC)) for path in SRC.glob(pattern) if path.name != "__init__.py"
        )
    return found


def built() -> list[Path]:
    """Every extension module a build left in the source tree."""
    return sorted(SRC.glob("pypbx/**/*.cpython-*.so")) + sorted(SRC.glob("*__mypyc*.so"))


def clean() -> None:
    for path in built():
        path.unlink()


def build(jobs: int) -> None:
    from mypyc.build import mypycify  # only here: --list and --clean run without mypy
    from setuptools import setup

    clean()  # a module dropped from COMPILED must not stay compiled
    os.chdir(SRC)  # module names are taken from the paths
    extensions = mypycify(
        [f"--cache-dir={BUILD / 'mypy-cache'}", *sources()],
        opt_level="3",
        target_dir=str(BUILD / "c"),
    )
    setup(
        name="pypbx-compiled",
        ext_modules=extensions,
        script_args=[
            "--quiet",
            "build_ext",
            "--inplace",
            # Every module's file, even when its C is unchanged: a module's own file is a
            # stub around the shared library, and its time is what core_build compares.
            "--force",
            "--build-temp",
            str(BUILD / "temp"),
            "--build-lib",
            str(BUILD / "lib"),
            "--parallel",
            str(jobs),
        ],
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--clean", action="store_true", help="remove the compiled modules")
    action.add_argument("--list", action="store_true", help="print the compiled sources")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="C compilers")
    args = parser.parse_args()
    if args.list:
        print(" ".join(f"src/{path}" for path in sources()))
    elif args.clean:
        clean()
    else:
        build(args.jobs)
        print(f"compiled {len(sources())} modules with mypyc", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
