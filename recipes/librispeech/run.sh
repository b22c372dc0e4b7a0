#!/usr/bin/env bash
# LibriSpeech ASR with the base Transformer (12 encoder / 6 decoder layers) on GPUs.
# Usage: recipes/librispeech/run.sh /path/to/LibriSpeech [extra overrides...]
set -euo pipefail
source="${1:?usage: run.sh /path/to/LibriSpeech [--field=value ...]}"; shift
seq2seq prepare librispeech "$source" data/librispeech
seq2seq train --config configs/asr/base.yaml "$@"
seq2seq export runs/asr_base_librispeech runs/asr_base_librispeech/package --average 10
for split in dev-clean dev-other test-clean test-other; do
  [ -f "data/librispeech/$split.jsonl" ] && seq2seq evaluate runs/asr_base_librispeech/package "data/librispeech/$split.jsonl"
done
