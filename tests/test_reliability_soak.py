"""The load test (``benchmarks/soak.py``) at a small count: a folder with 5% broken files transcribed twice
in one process, memory flat after warm-up, every file accounted for, the same output both times."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_soak_accounts_for_every_file_in_flat_memory_and_repeats_itself(tmp_path):
    out = tmp_path / "soak.json"
    command = [sys.executable, str(ROOT / "benchmarks" / "soak.py"), "--count", "80", "--chunk", "10"]
    command += ["--package", str(tmp_path / "absent"), "--corpus", str(tmp_path / "absent")]  # tiny, tones
    command += ["--folder", str(tmp_path / "audio"), "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode in (0, 1), result.stderr[-3000:]  # 1: a check failed, read below which
    report = json.loads(out.read_text())
    checks = {name: check["passed"] for name, check in report["checks"].items()}
    speed = [name for name in checks if name.startswith("throughput")]  # timing: reported, not asserted
    assert len(checks) == 5 and len(speed) == 1
    assert all(passed for name, passed in checks.items() if name not in speed), result.stdout
    assert report["files"] == 80 and len(report["broken"]) == 4  # every 20th file, four of five kinds
    assert len(report["chunks"]) == 16 and all(c["rss_mb"] > 0 for c in report["chunks"])
    lines = out.with_suffix(".txt").read_text().splitlines()
    assert len(lines) == 80 and sum(line.startswith("error: ") for line in lines) == 4
