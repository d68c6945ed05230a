"""Benchmarks, run from the repository root as modules: `python -m bench.scan_speed`."""

import compileall
from pathlib import Path


def compile_bytecode() -> None:
    """Compile snapaudit's modules, as installing a package does (pip, RPM): a checkout
    installed in editable mode under PYTHONDONTWRITEBYTECODE=1 would otherwise compile every
    module from source on each run, which the minimal loops (libvirt, lxml: installed
    packages) do not pay."""
    root = Path(__file__).resolve().parent.parent
    for package in ("auditor", "rules"):
        compileall.compile_dir(root / package, quiet=1)
