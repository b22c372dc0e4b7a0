#!/usr/bin/env bash
# ASR on the offline eSpeak NG corpus: prepare, train (small CPU model), export, evaluate, transcribe.
# Usage: recipes/synthetic/run.sh [--field=value ...]   (overrides go to `seq2seq train`)
set -euo pipefail
seq2seq prepare synthetic data/synthetic
seq2seq train --config configs/asr/small.yaml "$@"
seq2seq export runs/asr_small runs/asr_small/package --average 3
seq2seq evaluate runs/asr_small/package data/synthetic/test.jsonl --beam-size 10 --ctc-weight 0.3
seq2seq evaluate runs/asr_small/package data/synthetic/test.jsonl --beam-size 1 --ctc-weight 0
seq2seq transcribe runs/asr_small/package data/synthetic/wavs/test --output runs/asr_small/test_transcripts.txt
