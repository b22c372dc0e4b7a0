"""Training with 2 processes on CPU (gloo) through Lightning's DDP keeps batch-norm statistics in sync."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow


def test_two_process_cpu_ddp_trains_and_norm_statistics_agree(tiny_corpus, tmp_path):
    script = Path(__file__).parent / "ddp_train_script.py"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, str(script), str(tiny_corpus["train"].parent), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rank0 = torch.load(tmp_path / "norm_stats_rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "norm_stats_rank1.pt", weights_only=True)
    assert len(rank0) > 0
    for key in rank0:
        # Ranks saw different batches: only all-reduced statistics can agree this closely.
        assert torch.allclose(rank0[key], rank1[key], atol=1e-6), key
    moved = [
        k for k in rank0 if "running_var" in k and not torch.allclose(rank0[k], torch.ones_like(rank0[k]))
    ]
    assert moved, "running statistics never updated"
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
