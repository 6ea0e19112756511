"""Run one benchmark configuration in a fresh Python process (shared by the benchmark scripts).

A fresh process per configuration keeps allocator state, thread pools and caches from one
configuration out of the next; ``OMP_WAIT_POLICY=PASSIVE`` because OpenMP busy-waiting made TV
up to 30× slower beside another process (``benchmarks/models.py``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_config(script: str, config: dict, threads: int) -> dict:
    """``python script --worker '<config as JSON>'``; its last stdout line is the JSON result,
    or ``{**config, "error": [...]}`` with the last line of its stderr."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "OMP_WAIT_POLICY": "PASSIVE",
        "PYTHONPATH": str(ROOT),
    }
    proc = subprocess.run(
        [sys.executable, script, "--worker", json.dumps(config)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=False,
    )
    if proc.returncode != 0:
        return {**config, "error": proc.stderr.strip().splitlines()[-1:] or ["failed"]}
    return json.loads(proc.stdout.strip().splitlines()[-1])
