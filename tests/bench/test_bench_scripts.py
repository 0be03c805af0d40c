"""Every benchmark script starts: it imports cleanly when run as a file and documents --quick."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT

SCRIPTS = sorted(p for p in (ROOT / "bench").glob("*.py") if "argparse" in p.read_text())


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_benchmark_script_runs_and_offers_quick(script):
    # Run as `python bench/x.py`, as the README says: bench/ is then first on sys.path, so a script
    # named like a standard-library module would break every benchmark beside it.
    done = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "--quick" in done.stdout
