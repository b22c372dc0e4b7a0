"""Run by tests/test_ddp.py: 2-process CPU DDP (gloo) training; each rank saves its norm statistics.

Lightning's ``ddp`` strategy re-executes this script for rank 1, so it must be a real file.
"""

import sys
from pathlib import Path

import lightning as L
import torch

sys.path.insert(0, str(Path(__file__).parent))
from support import CONFIGS, tiny_asr_overrides  # noqa: E402

from seq2seq.experiments import load_experiment  # noqa: E402
from seq2seq.tasks import train  # noqa: E402


class SaveNormStatistics(L.Callback):
    def on_train_end(self, trainer, module):
        stats = {k: v.clone() for k, v in module.model.state_dict().items() if "running" in k}
        torch.save(stats, Path(trainer.default_root_dir) / f"norm_stats_rank{trainer.global_rank}.pt")


if __name__ == "__main__":
    corpus_dir, out = Path(sys.argv[1]), Path(sys.argv[2])
    corpus = {split: corpus_dir / f"{split}.jsonl" for split in ("train", "dev", "test")}
    overrides = tiny_asr_overrides(
        corpus,
        out,
        **{
            "trainer.devices": 2,
            "trainer.strategy": "ddp",
            "trainer.accelerator": "cpu",
            "model.encoder.norm.kind": "batch",
            "model.decoder.norm.kind": "batch",
            "data.num_workers": 0,
            "trainer.max_steps": 4,
            "data.max_frames": 2000,
        },
    )
    train(load_experiment(CONFIGS / "asr" / "small.yaml", overrides), callbacks=[SaveNormStatistics()])
