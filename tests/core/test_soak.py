"""A short fault soak (seconds): every failure mode, an outage and a restart lose nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_short_fault_soak_loses_nothing_and_duplicates_only_what_was_stored():
    out = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "bench", "bench_soak.py"),
            "--duration",
            "10",
            "--outage",
            "4",
            "--rate",
            "100",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["captured"] > 500
    assert result["lost"] == 0
    assert result["delivered_unique"] == result["captured"]
    assert result["unexplained_duplicates"] == 0  # only stored-then-dropped batches came twice
    assert sum(result["faults"].values()) > 0
