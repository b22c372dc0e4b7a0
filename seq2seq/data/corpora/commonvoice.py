"""Mozilla Common Voice: train/dev/test.tsv (client_id, path, sentence, ...) with clips under ``clips/``."""

from __future__ import annotations

import csv
from pathlib import Path

from seq2seq.data.corpora import probe_utterance, write_split
from seq2seq.data.manifest import Utterance, text_lines

SPLITS = ("train", "dev", "test")


def _read_tsv(tsv: Path, clips: Path, problems: list[str]) -> list[Utterance]:
    utterances, numbers = [], []

    def lines():  # decoded one at a time; ``numbers`` follows the file line of each row read
        for number, line in text_lines(tsv, problems):
            numbers.append(number)
            yield line

    # QUOTE_NONE: sentences contain quote characters that are text, not CSV quoting (one row per line).
    rows = csv.DictReader(lines(), delimiter="\t", quoting=csv.QUOTE_NONE)
    missing = {"client_id", "path", "sentence"} - set(rows.fieldnames or ())
    if missing:
        problems.append(f"{tsv}: missing column(s) {', '.join(sorted(missing))}")
        return []
    for row in rows:
        if not row["path"] or row["sentence"] is None:
            problems.append(f"{tsv}:{numbers[-1]}: empty path or sentence")
            continue
        utt_id = Path(row["path"]).stem
        utterance = probe_utterance(
            clips / row["path"], row["sentence"].strip(), utt_id, row["client_id"], problems
        )
        if utterance is not None:
            utterances.append(utterance)
    return utterances


def prepare_commonvoice(source_dir: str | Path, out_dir: str | Path) -> dict[str, Path]:
    """Write ``train.jsonl``, ``dev.jsonl`` and ``test.jsonl`` for each Common Voice split present.

    Durations come from the clip headers (mp3 through libsndfile); unreadable clips are reported and skipped.

    Args:
        source_dir: a Common Voice language folder (``train.tsv``... and ``clips/``).
        out_dir: folder for the manifests.

    Returns:
        Manifest path per split name.

    Raises:
        FileNotFoundError: none of ``train.tsv``, ``dev.tsv``, ``test.tsv`` exists.
    """
    source_dir, out_dir = Path(source_dir), Path(out_dir)
    present = [split for split in SPLITS if (source_dir / f"{split}.tsv").is_file()]
    if not present:
        raise FileNotFoundError(f"{source_dir}: no train.tsv, dev.tsv or test.tsv found")
    paths = {}
    for split in present:
        problems: list[str] = []
        utterances = _read_tsv(source_dir / f"{split}.tsv", source_dir / "clips", problems)
        paths[split] = write_split(out_dir, split, utterances, problems)
    return paths
