#!/usr/bin/env bash
# Real speech: FSDD connected digits, held-out speakers, trained from scratch and fine-tuned from the
# synthetic demo model. Usage: recipes/fsdd/run.sh [FSDD_DIR] [PRETRAINED_PACKAGE]
#   FSDD_DIR            the FSDD folder holding recordings/ (default: ../shared/data/fsdd)
#   PRETRAINED_PACKAGE  an ASR package to fine-tune (default: runs/demo/asr_model, from `make demo`)
set -euo pipefail
FSDD=${1:-../shared/data/fsdd}
PRETRAINED=${2:-runs/demo/asr_model}
seq2seq prepare fsdd "$FSDD" data/fsdd --test-speaker theo --dev-speaker nicolas
seq2seq train -c configs/asr/fsdd.yaml --out_dir=runs/fsdd_scratch
seq2seq export runs/fsdd_scratch runs/fsdd_scratch/package --average 3
seq2seq train -c configs/asr/fsdd.yaml --init-from "$PRETRAINED" --out_dir=runs/fsdd_finetuned \
    --optim.lr=0.0005 --optim.warmup_steps=100
seq2seq export runs/fsdd_finetuned runs/fsdd_finetuned/package --average 3
for run in fsdd_scratch fsdd_finetuned; do
    for split in test dev; do  # theo (test) and nicolas (dev): speakers never heard in training
        seq2seq evaluate runs/$run/package data/fsdd/connected_$split.jsonl
        seq2seq evaluate runs/$run/package data/fsdd/digits_$split.jsonl
    done
done
