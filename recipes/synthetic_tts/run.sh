#!/usr/bin/env bash
# Synthetic single-voice TTS recipe: prepare -> train (small CPU config) -> export -> synthesize -> evaluate.
# Usage: recipes/synthetic_tts/run.sh [ASR_PACKAGE]   (an ASR package enables the round-trip CER)
#        G2P=runs/g2p_cmudict/package recipes/synthetic_tts/run.sh [ASR_PACKAGE]
#          reads the phonemes of that G2P package (tokenizer.kind g2p) instead of eSpeak NG's, in runs/tts_small_g2p
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
ASR_PACKAGE=${1:-}
G2P=${G2P:-}
RUN=runs/tts_small${G2P:+_g2p}
FRONT_END=()
if [ -n "$G2P" ]; then
    FRONT_END=(--tokenizer.kind=g2p "--tokenizer.g2p=$G2P" "--out_dir=$RUN" "--data.cache_dir=$RUN/cache")
fi
# Tiny models on a shared CPU: one thread per process is several times faster than oversubscribing.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

# 5,000 single-voice sentences (4,500 train); the ASR splits are token-sized, they belong to other recipes.
$PY -m seq2seq prepare synthetic data/synthetic_tts --num-tts 5000 --num-train 20 --num-dev 10 --num-test 10
$PY -m seq2seq train -c configs/tts/small.yaml "${FRONT_END[@]}"   # rerunning resumes from $RUN
$PY -m seq2seq export "$RUN" "$RUN/package" --average 1      # the best checkpoint (see README: averaging hurt here)
$PY -m seq2seq synthesize "$RUN/package" \
    "have you seen my black pencil" "the meeting is on sunday at two thirty" --out "$RUN/samples"
$PY -m seq2seq evaluate "$RUN/package" data/synthetic_tts/tts_test.jsonl \
    ${ASR_PACKAGE:+--asr-model "$ASR_PACKAGE"} | tee "$RUN/evaluation.json"
