#!/usr/bin/env bash
# ASR on the offline eSpeak NG corpus, the 60-minute recipe: prepare 24,000 training utterances, train the
# Conformer of configs/asr/conformer_small.yaml for 60 minutes, export with the English word list, evaluate
# the three test sets with it and without it.
# Usage: recipes/synthetic/run.sh [--field=value ...]   (overrides go to `seq2seq train`; rerun to resume)
set -euo pipefail
RUN=runs/asr_conformer_small
seq2seq prepare synthetic data/synthetic --num-train 24000 --num-tts 0
seq2seq train --config configs/asr/conformer_small.yaml --trainer.max_minutes=60 --trainer.max_steps=30000 \
    --trainer.val_every_steps=1000 "$@"
seq2seq prepare lexicon data/lexicon.txt          # wordfreq's English words that CMUdict knows (97,911)
seq2seq export $RUN $RUN/package --average 3 --lexicon data/lexicon.txt
for split in test test_patterns test_open; do   # (a) training patterns, (b) held-out patterns, (c) open
    seq2seq evaluate $RUN/package data/synthetic/$split.jsonl --batch-size 16
    seq2seq evaluate $RUN/package data/synthetic/$split.jsonl --batch-size 16 --lexicon-weight 0 \
        --out $RUN/package/eval-$split-no-lexicon.jsonl
done
seq2seq transcribe $RUN/package data/synthetic/wavs/test --output $RUN/test_transcripts.txt
