#!/usr/bin/env bash
# Normalization study: norm x placement (+ small batches, decoder batch norm, post-norm without warm-up)
# on a 600-utterance subset of the synthetic corpus, equal step budgets. Needs data/synthetic
# (`seq2seq prepare synthetic data/synthetic`). Usage: recipes/norm_study/run.sh [study.py options]
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_WAIT_POLICY=PASSIVE
PYTHON=${PYTHON:-.venv/bin/python}
PYTHONPATH=. "$PYTHON" recipes/norm_study/study.py "$@"
