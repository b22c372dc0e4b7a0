"""One training run: tokenizer, data, feature statistics, model, Trainer; resumes when interrupted.

The task's LightningModule and DataModule come in as arguments (from :mod:`seq2seq.tasks`), so nothing
here compares task names.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import yaml

from seq2seq.core.config import ConfigError, to_dict
from seq2seq.core.package import copy_model_files
from seq2seq.core.text import G2P_DIR, Tokenizer, load_tokenizer, train_tokenizer
from seq2seq.data.text_pairs import read_pronunciations
from seq2seq.inference.pronounce import load_pronouncer
from seq2seq.training.analysis import analysis_callbacks
from seq2seq.training.initialization import load_initial_weights, package_tokenizer
from seq2seq.training.trainer import build_trainer, last_checkpoint

log = logging.getLogger(__name__)


def prepare_tokenizer(
    experiment: Any, out_dir: Path, texts: Callable[[str], list[str]]
) -> tuple[Tokenizer, Path]:
    """Load the run's tokenizer; the first time, copy ``tokenizer.source``'s or train one on the
    training texts (``texts(path)`` reads them: the task's data module knows its file format)."""
    directory = out_dir / "tokenizer"
    spec = experiment.tokenizer
    if spec.source and not (directory / "tokenizer.json").is_file():
        package_tokenizer(Path(spec.source), directory)
        log.info("using the tokenizer of %s", spec.source)
    if (directory / "tokenizer.json").is_file():
        return load_tokenizer(directory), directory
    training = getattr(experiment.data, "train_manifests", (experiment.data.train_manifest,))
    corpus, pronounce, dictionary = [text for manifest in training for text in texts(manifest)], None, None
    if spec.g2p:  # every word the run reads is pronounced now, so training never runs the G2P model
        # The copy is written before tokenizer.json, so a run that has one has both.
        pronounce = load_pronouncer(copy_model_files(spec.g2p, directory / G2P_DIR))
        data = experiment.data
        manifests = [m for m in (data.dev_manifest, data.test_manifest) if m]
        corpus += [text for manifest in manifests for text in texts(manifest)]
        dictionary = read_pronunciations(spec.dictionary)
    tokenizer = train_tokenizer(
        corpus,
        directory,
        kind=spec.kind,
        vocab_size=spec.vocab_size,
        normalizer=experiment.text,
        language=spec.language,
        pronounce=pronounce,
        dictionary=dictionary,
    )
    log.info("trained a %s tokenizer with %d symbols -> %s", spec.kind, tokenizer.vocab_size, directory)
    return tokenizer, directory


def report_unknown_characters(
    experiment: Any, tokenizer: Tokenizer, texts: Callable[[str], list[str]]
) -> None:
    """Say which characters of the dev set the tokenizer cannot represent (never drop them silently)."""
    if not experiment.data.dev_manifest:
        return
    unknown = Counter()
    for text in texts(experiment.data.dev_manifest):
        unknown += tokenizer.unknown_characters(text)
    if unknown:
        shown = ", ".join(f"{c!r}×{n}" for c, n in unknown.most_common(10))
        log.warning("dev set: %d characters outside the vocabulary (%s)", sum(unknown.values()), shown)


def fit(
    experiment: Any,
    module_class: type[L.LightningModule],
    datamodule_class: type[L.LightningDataModule],
    callbacks: list[L.Callback] | None = None,
    init_from: str | Path | None = None,
) -> Path:
    """Train ``experiment`` under ``experiment.out_dir`` with its task's module and data module.

    ``init_from`` names a model package whose tokenizer, weights and feature statistics the run starts
    from (fine-tuning); a resumed run continues from its checkpoint instead.

    Raises:
        ConfigError: a manifest named by the config does not exist (checked before anything is written).
        RuntimeError: training stopped on ``trainer.max_bad_batches`` consecutive non-finite losses;
            ``checkpoints/last.ckpt`` then holds the last good state.
    """
    check_manifests(experiment)
    out_dir = Path(experiment.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(experiment), sort_keys=False))
    L.seed_everything(experiment.seed, workers=True, verbose=False)
    resume = last_checkpoint(out_dir)
    if init_from is not None and resume is None:
        package_tokenizer(Path(init_from), out_dir / "tokenizer")
    own_tokenizer = getattr(datamodule_class, "prepare_tokenizer", None)  # text2text: two tokenizers
    if own_tokenizer is not None:
        tokenizer, tokenizer_dir = own_tokenizer(experiment, out_dir)
    else:
        tokenizer, tokenizer_dir = prepare_tokenizer(experiment, out_dir, datamodule_class.texts)
        report_unknown_characters(experiment, tokenizer, datamodule_class.texts)
    experiment = dataclasses.replace(
        experiment, model=dataclasses.replace(experiment.model, **tokenizer.model_sizes())
    )
    datamodule = datamodule_class(experiment.data, tokenizer)
    task = module_class(experiment, tokenizer, tokenizer_dir)
    if resume is None and init_from is not None:
        datamodule.prepare_data()
        count = load_initial_weights(task.model, Path(init_from), experiment.task)
        log.info("initialised %d tensors (and the feature statistics) from %s", count, init_from)
    elif resume is None and hasattr(task.model, "set_feature_stats"):  # no statistics for text inputs
        datamodule.prepare_data()
        stats = datamodule.feature_statistics(max_utterances=2000)
        if stats is not None:  # None: a task without features (LM)
            task.model.set_feature_stats(stats)
    else:
        log.info("resuming from %s", resume)
    callbacks = [*(callbacks or []), *analysis_callbacks(experiment.analysis, out_dir)]
    trainer = build_trainer(experiment.trainer, out_dir, callbacks)
    trainer.fit(task, datamodule=datamodule, ckpt_path=resume)
    if task.guard.stopped_at is not None:
        raise RuntimeError(
            f"{out_dir}: training stopped at step {trainer.global_step} after "
            f"{experiment.trainer.max_bad_batches} consecutive non-finite losses; "
            f"the last good state is in {last_checkpoint(out_dir)}"
        )
    return out_dir


def check_manifests(experiment: Any) -> None:
    """Fail before any work when the training or validation manifest does not exist."""
    for name in ("train_manifest", "dev_manifest"):
        path = getattr(experiment.data, name)
        if path and not Path(path).is_file():
            raise ConfigError(f"data.{name}={path}: no such manifest file")
    for path in getattr(experiment.data, "extra_train_manifests", ()):
        if not Path(path).is_file():
            raise ConfigError(f"data.extra_train_manifests: {path}: no such manifest file")
