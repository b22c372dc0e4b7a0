#!/usr/bin/env bash
# Leave-one-speaker-out over every FSDD speaker: each fold holds one speaker out for test and trains on the
# other five, holding their takes 0-4 out for dev and checkpoint choice (FSDD's own held-out takes).
# DEV=speaker (environment) holds the next speaker (in name order, cyclically) out for dev instead, and
# trains on the other four. TRAIN_ARGS (environment) adds `seq2seq train` overrides to every fold, for an
# ablation: TRAIN_ARGS="--model.utterance_mean_norm=true" OUT=runs/fsdd_folds_cmn recipes/fsdd/folds.sh ...
# Usage: recipes/fsdd/folds.sh [FSDD_DIR] [PRETRAINED_PACKAGE] [SPEAKER ...]
#   FSDD_DIR            the FSDD folder holding recordings/ (default: ../shared/data/fsdd)
#   PRETRAINED_PACKAGE  an ASR package to fine-tune as well; "-" trains from scratch only (the default)
#   SPEAKER ...         the test speakers of the folds to run (default: all of them)
# WAYS="finetuned" (environment) runs only the named trainings: scratch and/or finetuned (default: scratch,
# and finetuned when a package is given).
# Writes $OUT/<speaker>/{scratch,finetuned}/ (OUT: runs/fsdd_folds, runs/fsdd_folds_dev_speaker with
# DEV=speaker), appends one line per evaluation to $OUT/results.tsv (speaker, training, manifest, WER,
# CER) and prints the table.
set -euo pipefail
FSDD=${1:-../shared/data/fsdd}
PRETRAINED=${2:--}
shift $(($# < 2 ? $# : 2))
mapfile -t ALL < <(ls "$FSDD/recordings" | sed -n 's/^[0-9]_\([a-z]*\)_[0-9]*\.wav$/\1/p' | sort -u)
[ ${#ALL[@]} -ge 3 ] || { echo "error: $FSDD/recordings: fewer than 3 speakers" >&2; exit 2; }
TEST=("${@:-${ALL[@]}}")
ways=(scratch)
[ "$PRETRAINED" != "-" ] && ways+=(finetuned)
[ -n "${WAYS:-}" ] && read -ra ways <<<"$WAYS"
for way in "${ways[@]}"; do
    case $way in
        scratch) ;;
        finetuned) [ "$PRETRAINED" != "-" ] || { echo "error: WAYS=finetuned needs PRETRAINED_PACKAGE" >&2; exit 2; } ;;
        *) echo "error: WAYS: unknown training '$way' (scratch, finetuned)" >&2; exit 2 ;;
    esac
done
case ${DEV:=takes} in
    takes) OUT=${OUT:-runs/fsdd_folds} DATA=data/fsdd_folds ;;
    speaker) OUT=${OUT:-runs/fsdd_folds_dev_speaker} DATA=data/fsdd_folds_dev_speaker ;;
    *) echo "error: DEV: unknown dev split '$DEV' (takes, speaker)" >&2; exit 2 ;;
esac
read -ra extra <<<"${TRAIN_ARGS:-}"
mkdir -p "$OUT"
for speaker in "${TEST[@]}"; do
    dev=none
    [ "$DEV" = speaker ] && for i in "${!ALL[@]}"; do
        [ "${ALL[$i]}" = "$speaker" ] && dev=${ALL[$(((i + 1) % ${#ALL[@]}))]}
    done
    data=$DATA/$speaker
    seq2seq prepare fsdd "$FSDD" "$data" --test-speaker "$speaker" --dev-speaker "$dev"
    for way in "${ways[@]}"; do
        run=$OUT/$speaker/$way
        init=()
        [ "$way" = finetuned ] && init=(--init-from "$PRETRAINED" --optim.lr=0.0005 --optim.warmup_steps=100)
        seq2seq train -c configs/asr/fsdd.yaml --out_dir="$run" "${init[@]}" "${extra[@]}" \
            --data.train_manifest="$data/connected_train.jsonl" --data.dev_manifest="$data/connected_dev.jsonl" \
            --data.test_manifest="$data/connected_test.jsonl"
        seq2seq export "$run" "$run/package" --average 3
        for manifest in connected_test digits_test; do
            line=$(seq2seq evaluate "$run/package" "$data/$manifest.jsonl" | tail -1)
            echo "$line"
            wer=$(sed -n 's/.* WER \([0-9.]*\)%.*/\1/p' <<<"$line")
            cer=$(sed -n 's/.* CER \([0-9.]*\)%.*/\1/p' <<<"$line")
            printf '%s\t%s\t%s\t%s\t%s\n' "$speaker" "$way" "$manifest" "$wer" "$cer" >>"$OUT/results.tsv"
        done
    done
done
awk -F'\t' -f "$(dirname "$0")/folds_table.awk" "$OUT/results.tsv"
