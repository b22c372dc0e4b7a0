"""Text normalisation and tokenizers (characters, eSpeak NG phonemes, a G2P model's phonemes, sentencepiece),
one set of reserved ids.

Every tokenizer maps text to ids laid out the same way::

    0 BLANK (CTC)   1 PAD   2 SOS   3 EOS   4 UNK   5.. content symbols

so models, losses and decoders never need to know which tokenizer made the ids. Tokenizers are saved as JSON
(plus sentencepiece's own ``.model`` file); nothing is pickled.
"""

from __future__ import annotations

import io
import json
import shutil
import string
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, Protocol

import sentencepiece

BLANK_ID = 0
PAD_ID = 1
SOS_ID = 2
EOS_ID = 3
UNK_ID = 4
NUM_RESERVED = 5

SPACE = "▁"  # visible space symbol, the same one sentencepiece uses
CONFIG_FILE = "tokenizer.json"
MODEL_FILE = "tokenizer.model"

TokenizerKind = Literal["char", "phoneme", "g2p", "unigram", "bpe", "symbols"]
LEXICON_FILE = "lexicon.tsv"
G2P_DIR = "g2p"  # a pronunciation tokenizer's copy of its G2P model package
# Scripts (first word of a letter's Unicode name) that eSpeak NG voices read as their language; every voice
# also reads Latin. Any other letter, and any emoji or other symbol (category So), it spells out by name.
_VOICE_SCRIPTS = {
    **dict.fromkeys(("ru", "uk", "bg", "be", "mk", "sr", "ky", "kk", "tt", "ba", "cv"), {"CYRILLIC"}),
    **dict.fromkeys(("el", "grc"), {"GREEK"}),
    **dict.fromkeys(("cmn", "yue", "hak"), {"CJK"}),
    "ja": {"CJK", "HIRAGANA", "KATAKANA"},
    "ko": {"HANGUL"},
    **dict.fromkeys(("ar", "fa", "ur", "ps", "sd"), {"ARABIC"}),
    "he": {"HEBREW"},
    **dict.fromkeys(("hi", "mr", "ne", "kok"), {"DEVANAGARI"}),
    **dict.fromkeys(("bn", "as"), {"BENGALI"}),
    **{code: {script} for code, script in (("ta", "TAMIL"), ("te", "TELUGU"), ("kn", "KANNADA"))},
    **{code: {script} for code, script in (("ml", "MALAYALAM"), ("gu", "GUJARATI"), ("pa", "GURMUKHI"))},
    **{code: {script} for code, script in (("th", "THAI"), ("ka", "GEORGIAN"), ("hy", "ARMENIAN"))},
    **{code: {script} for code, script in (("am", "ETHIOPIC"), ("my", "MYANMAR"), ("si", "SINHALA"))},
}
_NEUTRAL_NAMES = {"LATIN", "MODIFIER", "COMBINING"}
_APOSTROPHES = str.maketrans({"’": "'", "‘": "'", "ʼ": "'"})


class Pronouncer(Protocol):
    """What a ``g2p`` tokenizer asks of its G2P model (:class:`seq2seq.inference.pronounce.G2PPronouncer`)."""

    @property
    def letters(self) -> frozenset[str]:
        """The characters a word may be spelled with."""
        ...

    @property
    def directory(self) -> Path | None:
        """The model's package folder, which the tokenizer keeps a copy of (None: nothing to copy)."""
        ...

    def __call__(self, words: Sequence[str]) -> list[Sequence[str]]:
        """One phoneme sequence per word (each spelled with ``letters``)."""
        ...


@dataclass(frozen=True)
class TextNormalizerConfig:
    """How transcripts are normalised before tokenisation (saved with the model).

    Attributes:
        lowercase: fold case.
        strip_punctuation: replace punctuation by spaces; apostrophes inside words ("don't") are kept.
        collapse_whitespace: squeeze whitespace runs to one space and trim the ends.
        unicode_nfkc: apply Unicode NFKC (full-width forms, ligatures, composed accents).
    """

    lowercase: bool = True
    strip_punctuation: bool = True
    collapse_whitespace: bool = True
    unicode_nfkc: bool = True

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not isinstance(value, bool):
                raise ValueError(f"TextNormalizerConfig.{name} must be true or false, got {value!r}")


class TextNormalizer:
    """Applies a ``TextNormalizerConfig`` to strings."""

    def __init__(self, config: TextNormalizerConfig = TextNormalizerConfig()) -> None:
        self.config = config

    def __call__(self, text: str) -> str:
        cfg = self.config
        if cfg.unicode_nfkc:
            text = unicodedata.normalize("NFKC", text)
        if cfg.lowercase:
            text = text.lower()
        if cfg.strip_punctuation:
            text = self._strip_punctuation(text.translate(_APOSTROPHES))
        if cfg.collapse_whitespace:
            text = " ".join(text.split())
        return text

    @staticmethod
    def _strip_punctuation(text: str) -> str:
        chars = []
        for i, ch in enumerate(text):
            if ch == "'":
                # Keep the apostrophe only between letters, where it belongs to the word.
                inside = 0 < i < len(text) - 1 and text[i - 1].isalnum() and text[i + 1].isalnum()
                chars.append(ch if inside else " ")
            elif unicodedata.category(ch).startswith("P") or ch in string.punctuation:
                chars.append(" ")
            else:
                chars.append(ch)
        return "".join(chars)

    def to_dict(self) -> dict[str, bool]:
        """JSON-ready settings."""
        return asdict(self.config)

    @classmethod
    def from_dict(cls, data: dict[str, bool]) -> TextNormalizer:
        """Inverse of ``to_dict``."""
        return cls(TextNormalizerConfig(**data))


class Tokenizer:
    """Shared behaviour: normalise, encode, count unknown characters, decode, save.

    Subclasses implement ``_encode_normalized``, ``_decode_content``, ``_known_characters`` and
    ``_save_extra``, and may override ``_prepare`` (text -> the string that is tokenised).
    """

    kind: str = ""

    def __init__(self, normalizer: TextNormalizer | None = None) -> None:
        self.normalizer = normalizer or TextNormalizer()
        self.unknown_counts: Counter[str] = Counter()

    @property
    def vocab_size(self) -> int:
        """Number of ids, reserved ones included."""
        raise NotImplementedError

    def model_sizes(self) -> dict[str, int]:
        """The model config fields this tokenizer fills (``vocab_size``)."""
        return {"vocab_size": self.vocab_size}

    def encode(self, text: str) -> list[int]:
        """Normalise and tokenise; unknown characters map to ``UNK_ID`` and count in ``unknown_counts``."""
        normalized = self._prepare(text)
        self.unknown_counts.update(self._unknown_in(normalized))
        return self._encode_normalized(normalized)

    def decode(self, ids: Iterable[int]) -> str:
        """Text for ``ids``; reserved ids (blank, pad, sos, eos, unk) are dropped."""
        return self._decode_content([int(i) for i in ids if int(i) >= NUM_RESERVED])

    def unknown_characters(self, text: str) -> Counter[str]:
        """Characters of ``text`` (after normalisation) that the vocabulary cannot represent."""
        return self._unknown_in(self._prepare(text))

    def outside_language(self, text: str) -> OutsideLanguage:
        """Characters of ``text`` the model cannot say as written: here, those outside the vocabulary,
        which a synthesizer drops (the phoneme tokenizer also finds the ones eSpeak NG spells out)."""
        return OutsideLanguage(dropped=self.unknown_characters(text), spelled=Counter())

    def _prepare(self, text: str) -> str:
        """The string whose characters are tokenised: the normalised text."""
        return self.normalizer(text)

    def _unknown_in(self, normalized: str) -> Counter[str]:
        known = self._known_characters()
        return Counter(ch for ch in normalized if ch != " " and ch not in known)

    def save(self, directory: str | Path) -> Path:
        """Write ``tokenizer.json`` (and any model file) into ``directory``; returns the JSON path."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = {"kind": self.kind, "normalizer": self.normalizer.to_dict(), **self._save_extra(directory)}
        path = directory / CONFIG_FILE
        path.write_text(json.dumps(config, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        return path

    def _encode_normalized(self, text: str) -> list[int]:
        raise NotImplementedError

    def _decode_content(self, ids: list[int]) -> str:
        raise NotImplementedError

    def _known_characters(self) -> frozenset[str]:
        raise NotImplementedError

    def _save_extra(self, directory: Path) -> dict:
        raise NotImplementedError


@dataclass(frozen=True)
class OutsideLanguage:
    """Characters of a text outside the language a model speaks, with their counts.

    Attributes:
        dropped: characters left out (no symbol for them, or the phonemizer says nothing for them).
        spelled: characters the phonemizer reads out by name (``你`` as "Chinese letter", ``😀`` as
            "grinning face") rather than as words of the language.
    """

    dropped: Counter[str]
    spelled: Counter[str]

    def __bool__(self) -> bool:
        return bool(self.dropped or self.spelled)

    def describe(self) -> str:
        """``"3 characters outside the model's language: 2 dropped ('你' x2), 1 spelled out ('😀')"``."""
        parts = [
            f"{sum(counts.values())} {verb} ({_shown(counts)})"
            for verb, counts in (("dropped", self.dropped), ("spelled out", self.spelled))
            if counts
        ]
        total = sum(self.dropped.values()) + sum(self.spelled.values())
        return f"{total} character{'s' * (total != 1)} outside the model's language: {', '.join(parts)}"


def _shown(counts: Counter[str], most: int = 8) -> str:
    shown = [f"{c!r}" + (f" x{n}" if n > 1 else "") for c, n in counts.most_common(most)]
    return ", ".join(shown) + (", ..." if len(counts) > most else "")


def foreign_script(character: str, language: str) -> bool:
    """Whether an eSpeak NG voice for ``language`` reads ``character`` as a name, not as its language:
    a letter of another script, or an emoji or other symbol. Digits, punctuation, currency and maths
    signs are read in every language."""
    category = unicodedata.category(character)
    if category == "So":
        return True
    if not category.startswith("L"):
        return False
    script = unicodedata.name(character, "UNNAMED").split(" ")[0]
    return script not in _NEUTRAL_NAMES | _VOICE_SCRIPTS.get(language.split("-")[0], set())


class CharTokenizer(Tokenizer):
    """One id per character; the space is the symbol ``▁``."""

    kind = "char"

    def __init__(self, symbols: Sequence[str], normalizer: TextNormalizer | None = None) -> None:
        super().__init__(normalizer)
        if len(set(symbols)) != len(symbols) or any(len(s) != 1 for s in symbols):
            raise ValueError("CharTokenizer symbols must be distinct single characters")
        self.symbols = list(symbols)
        self._ids = {s: NUM_RESERVED + i for i, s in enumerate(self.symbols)}
        self._known = frozenset(self.symbols)

    @classmethod
    def build(cls, texts: Iterable[str], normalizer: TextNormalizer | None = None) -> CharTokenizer:
        """Vocabulary of every character in the normalised ``texts``, in code point order."""
        normalizer = normalizer or TextNormalizer()
        chars = set()
        for text in texts:
            chars.update(normalizer(text).replace(" ", SPACE))
        return cls(sorted(chars), normalizer)

    @property
    def vocab_size(self) -> int:
        return NUM_RESERVED + len(self.symbols)

    def _encode_normalized(self, text: str) -> list[int]:
        return [self._ids.get(ch, UNK_ID) for ch in text.replace(" ", SPACE)]

    def _decode_content(self, ids: list[int]) -> str:
        return "".join(self.symbols[i - NUM_RESERVED] for i in ids if i < self.vocab_size).replace(SPACE, " ")

    def _known_characters(self) -> frozenset[str]:
        return self._known

    def _save_extra(self, directory: Path) -> dict:
        return {"symbols": self.symbols}


class PhonemeTokenizer(CharTokenizer):
    """One id per IPA character of eSpeak NG's pronunciation of the normalised text.

    TTS models learn far faster from phonemes than from English spelling (no letter-to-sound rules to
    infer); the text is phonemised on the fly, so users still give plain text. Characters that eSpeak
    cannot pronounce are its problem, not ours: only IPA symbols unseen in training count as unknown.
    """

    kind = "phoneme"

    def __init__(
        self, symbols: Sequence[str], language: str = "en-us", normalizer: TextNormalizer | None = None
    ):
        super().__init__(symbols, normalizer)
        self.language = language

    @classmethod
    def build(  # type: ignore[override]
        cls, texts: Iterable[str], normalizer: TextNormalizer | None = None, language: str = "en-us"
    ) -> PhonemeTokenizer:
        """Vocabulary of every IPA character eSpeak NG produces for the normalised ``texts``."""
        normalizer = normalizer or TextNormalizer()
        chars = set()
        for text in texts:
            chars.update(_phonemize(normalizer(text), language).replace(" ", SPACE))
        return cls(sorted(chars), language, normalizer)

    def phonemes(self, text: str) -> str:
        """IPA string the model reads for ``text`` (after normalisation)."""
        return _phonemize(self.normalizer(text), self.language)

    _prepare = phonemes  # encoding and unknown-symbol counting both work on the phonemes

    def outside_language(self, text: str) -> OutsideLanguage:
        """Letters of other scripts and emoji in ``text``: spelled out when eSpeak NG says something for
        them alone, else dropped; IPA symbols unseen in training are dropped as well."""
        foreign = Counter(c for c in self.normalizer(text) if foreign_script(c, self.language))
        spelled = Counter({c: n for c, n in foreign.items() if _phonemize(c, self.language).strip()})
        return OutsideLanguage(dropped=foreign - spelled + self.unknown_characters(text), spelled=spelled)

    def _save_extra(self, directory: Path) -> dict:
        return {"symbols": self.symbols, "language": self.language}


def _symbol_normalizer() -> TextNormalizer:
    """Symbols are case-sensitive and may hold punctuation: by default only whitespace is normalised."""
    return TextNormalizer(TextNormalizerConfig(lowercase=False, strip_punctuation=False))


class SymbolTokenizer(Tokenizer):
    """One id per whitespace-separated symbol (ARPAbet phonemes such as ``HH AH0 L OW1``).

    The symbols are the vocabulary; a symbol unseen in training is unknown as a whole (its characters
    are what ``unknown_characters`` reports, joined: the symbol itself).
    """

    kind = "symbols"

    def __init__(self, symbols: Sequence[str], normalizer: TextNormalizer | None = None) -> None:
        super().__init__(normalizer or _symbol_normalizer())
        if len(set(symbols)) != len(symbols) or any(not s or s != s.strip() or " " in s for s in symbols):
            raise ValueError("SymbolTokenizer symbols must be distinct non-empty strings without spaces")
        self.symbols = list(symbols)
        self._ids = {s: NUM_RESERVED + i for i, s in enumerate(self.symbols)}

    @classmethod
    def build(cls, texts: Iterable[str], normalizer: TextNormalizer | None = None) -> SymbolTokenizer:
        """Vocabulary of every symbol of the normalised ``texts``, sorted."""
        normalizer = normalizer or _symbol_normalizer()
        return cls(sorted({s for text in texts for s in normalizer(text).split()}), normalizer)

    @property
    def vocab_size(self) -> int:
        return NUM_RESERVED + len(self.symbols)

    def _encode_normalized(self, text: str) -> list[int]:
        return [self._ids.get(s, UNK_ID) for s in text.split()]

    def _decode_content(self, ids: list[int]) -> str:
        return " ".join(self.symbols[i - NUM_RESERVED] for i in ids if i < self.vocab_size)

    def _unknown_in(self, normalized: str) -> Counter[str]:
        return Counter(s for s in normalized.split() if s not in self._ids)

    def _save_extra(self, directory: Path) -> dict:
        return {"symbols": self.symbols}


class PronunciationTokenizer(SymbolTokenizer):
    """One id per phoneme of the words' pronunciations, with a word-boundary symbol between words: the
    text front-end of a TTS model whose phonemes come from a grapheme-to-phoneme model (``kind: g2p``)
    rather than from eSpeak NG, as CMUdict-style ARPAbet front-ends of Tacotron and ESPnet do.

    The phonemes are symbols (:class:`SymbolTokenizer`'s ids, unknowns and decoding). Each word is looked up
    in ``lexicon`` (the G2P model's pronunciations of every word of the run's manifests, written when the
    tokenizer is built, so training never runs the G2P model); a new word is pronounced by ``pronounce``
    (bound when a package is loaded for inference) and remembered. Characters the G2P model cannot spell
    (outside ``letters``) are dropped and reported as unknown.
    """

    kind = "g2p"

    def __init__(
        self,
        symbols: Sequence[str],
        letters: Iterable[str],
        lexicon: dict[str, tuple[str, ...]],
        normalizer: TextNormalizer | None = None,
        g2p_dir: Path | None = None,
    ) -> None:
        super().__init__(symbols, normalizer or TextNormalizer())  # words are read as text, not symbols
        self.letters, self.lexicon, self.g2p_dir = frozenset(letters), dict(lexicon), g2p_dir
        self.pronounce: Pronouncer | None = None

    @classmethod
    def build(  # type: ignore[override]
        cls,
        texts: Iterable[str],
        pronounce: Pronouncer,
        normalizer: TextNormalizer,
        dictionary: dict[str, tuple[str, ...]] | None = None,
    ) -> PronunciationTokenizer:
        """Pronounce every word of ``texts`` once (``dictionary``'s words are looked up instead, and all
        of them kept); the vocabulary is every phoneme the lexicon holds."""
        letters, lexicon = pronounce.letters, dict(dictionary or {})
        words = {word for text in texts for word in _spellable_words(normalizer(text), letters)}
        new = sorted(words - lexicon.keys())
        lexicon |= {word: tuple(phonemes) for word, phonemes in zip(new, pronounce(new), strict=True)}
        phonemes = sorted({p for pronunciation in lexicon.values() for p in pronunciation})
        built = cls([*phonemes, SPACE], letters, lexicon, normalizer, pronounce.directory)
        built.pronounce = pronounce
        return built

    def pronunciations(self, text: str) -> str:
        """The phonemes the model reads for ``text``: ``"HH AH L OW ▁ W ER L D"``."""
        words = _spellable_words(self.normalizer(text), self.letters)
        new = sorted({word for word in words if word not in self.lexicon})
        if new:
            if self.pronounce is None:
                raise ValueError(
                    f"{new[0]!r} is not in the tokenizer's lexicon and no G2P model is bound to pronounce it "
                    "(load the package with seq2seq.load_package)"
                )
            for word, phonemes in zip(new, self.pronounce(new), strict=True):
                self.lexicon[word] = tuple(phonemes)
        return f" {SPACE} ".join(" ".join(self.lexicon[word]) for word in words if self.lexicon[word])

    _prepare = pronunciations

    def unknown_characters(self, text: str) -> Counter[str]:
        """Characters the G2P model cannot spell, and phonemes unseen when the tokenizer was built."""
        unspellable = Counter(c for c in self.normalizer(text) if c != " " and c not in self.letters)
        return unspellable + self._unknown_in(self._prepare(text))

    def _save_extra(self, directory: Path) -> dict:
        lines = (f"{word}\t{' '.join(phonemes)}\n" for word, phonemes in sorted(self.lexicon.items()))
        (directory / LEXICON_FILE).write_text("".join(lines), encoding="utf-8")
        own = directory / G2P_DIR
        if self.g2p_dir is not None and self.g2p_dir.resolve() != own.resolve():
            shutil.copytree(self.g2p_dir, own, dirs_exist_ok=True)
        return {
            **super()._save_extra(directory),
            "letters": sorted(self.letters),
            "lexicon": LEXICON_FILE,
            "g2p": G2P_DIR,
        }

    @classmethod
    def load(cls, directory: Path, config: dict, normalizer: TextNormalizer) -> PronunciationTokenizer:
        lexicon = {}
        for number, line in enumerate((directory / config["lexicon"]).read_text("utf-8").splitlines(), 1):
            word, tab, phonemes = line.partition("\t")
            if not tab:
                raise ValueError(f"{directory / config['lexicon']}:{number}: expected 'word<TAB>phonemes'")
            lexicon[word] = tuple(phonemes.split())
        g2p = directory / config["g2p"]
        return cls(config["symbols"], config["letters"], lexicon, normalizer, g2p if g2p.is_dir() else None)


def _spellable_words(normalized: str, letters: frozenset[str]) -> list[str]:
    """The words of a normalised text, each without the characters outside ``letters`` (empty ones gone)."""
    spelled = ("".join(c for c in word if c in letters) for word in normalized.split())
    return [word for word in spelled if word]


class TokenizerPair:
    """The source and target tokenizers of a text-to-text model, saved as one tokenizer folder::

        tokenizer.json   {"kind": "pair", "source": "source", "target": "target"}
        source/          the source tokenizer (e.g. characters of a word)
        target/          the target tokenizer (e.g. ARPAbet symbols)

    ``vocab_size``, ``encode`` and ``decode`` are the target's, so code that trains and decodes a
    decoder's ids (export, initialisation) treats a pair like any tokenizer.
    """

    kind = "pair"

    def __init__(self, source: Tokenizer, target: Tokenizer) -> None:
        self.source, self.target = source, target

    @property
    def vocab_size(self) -> int:
        return self.target.vocab_size

    def model_sizes(self) -> dict[str, int]:
        """The model config fields the pair fills: both vocabulary sizes."""
        return {"source_vocab_size": self.source.vocab_size, "vocab_size": self.target.vocab_size}

    def encode(self, text: str) -> list[int]:
        return self.target.encode(text)

    def decode(self, ids: Iterable[int]) -> str:
        return self.target.decode(ids)

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        self.source.save(directory / "source")
        self.target.save(directory / "target")
        path = directory / CONFIG_FILE
        path.write_text(
            json.dumps({"kind": self.kind, "source": "source", "target": "target"}, indent=2) + "\n"
        )
        return path


def _phonemize(text: str, language: str) -> str:
    from seq2seq.core.espeak import phonemize  # loads libespeak-ng only when phonemes are used

    return phonemize(text, language) if text else ""


class SentencePieceTokenizer(Tokenizer):
    """Sentencepiece unigram or BPE pieces, shifted so our reserved ids hold.

    Sentencepiece is trained with only its ``<unk>`` at id 0 (no bos/eos/pad), and every piece id is offset
    by ``UNK_ID``: its ``<unk>`` lands exactly on ``UNK_ID`` and real pieces start at ``NUM_RESERVED``.
    """

    kind = "sentencepiece"
    _OFFSET = UNK_ID

    def __init__(self, model_proto: bytes, normalizer: TextNormalizer | None = None) -> None:
        super().__init__(normalizer)
        self.model_proto = model_proto
        self.processor = sentencepiece.SentencePieceProcessor(model_proto=model_proto)
        pieces = (self.processor.id_to_piece(i) for i in range(self.processor.get_piece_size()))
        self._known = frozenset(p for p in pieces if len(p) == 1 and p != SPACE)

    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        model_type: Literal["unigram", "bpe"] = "unigram",
        vocab_size: int = 256,
        normalizer: TextNormalizer | None = None,
    ) -> SentencePieceTokenizer:
        """Train on normalised ``texts``; ``vocab_size`` (an upper bound) counts the reserved ids too."""
        if vocab_size <= NUM_RESERVED + 1:
            raise ValueError(f"vocab_size must be > {NUM_RESERVED + 1}, got {vocab_size}")
        normalizer = normalizer or TextNormalizer()
        lines = [line for line in (normalizer(t) for t in texts) if line]
        if not lines:
            raise ValueError("cannot train a sentencepiece model on no text")
        model = io.BytesIO()
        sentencepiece.SentencePieceTrainer.train(
            sentence_iterator=iter(lines),
            model_writer=model,
            model_type=model_type,
            vocab_size=vocab_size - cls._OFFSET,
            hard_vocab_limit=False,  # tiny corpora cannot fill a large vocabulary; take what they give
            character_coverage=1.0,  # every training character stays representable
            normalization_rule_name="identity",  # TextNormalizer already normalised the text
            unk_id=0,
            bos_id=-1,
            eos_id=-1,
            pad_id=-1,
            minloglevel=2,
            num_threads=1,
        )
        return cls(model.getvalue(), normalizer)

    @property
    def vocab_size(self) -> int:
        return self.processor.get_piece_size() + self._OFFSET

    def _encode_normalized(self, text: str) -> list[int]:
        return [i + self._OFFSET for i in self.processor.encode(text, out_type=int)]

    def _decode_content(self, ids: list[int]) -> str:
        # Dropped ids (unk) can leave a dangling word boundary behind, hence the strip.
        return self.processor.decode([i - self._OFFSET for i in ids if i < self.vocab_size]).strip()

    def _known_characters(self) -> frozenset[str]:
        return self._known

    def _save_extra(self, directory: Path) -> dict:
        (directory / MODEL_FILE).write_bytes(self.model_proto)
        return {"model_file": MODEL_FILE}


def load_tokenizer(directory: str | Path) -> Tokenizer:
    """Load a tokenizer saved with ``Tokenizer.save``."""
    directory = Path(directory)
    config = json.loads((directory / CONFIG_FILE).read_text(encoding="utf-8"))
    if config.get("kind") == TokenizerPair.kind:
        return TokenizerPair(load_tokenizer(directory / "source"), load_tokenizer(directory / "target"))  # type: ignore[return-value]
    normalizer = TextNormalizer.from_dict(config["normalizer"])
    match config["kind"]:
        case "char":
            return CharTokenizer(config["symbols"], normalizer)
        case "phoneme":
            return PhonemeTokenizer(config["symbols"], config["language"], normalizer)
        case "sentencepiece":
            return SentencePieceTokenizer((directory / config["model_file"]).read_bytes(), normalizer)
        case "symbols":
            return SymbolTokenizer(config["symbols"], normalizer)
        case "g2p":
            return PronunciationTokenizer.load(directory, config, normalizer)
        case other:
            raise ValueError(
                f"{directory / CONFIG_FILE}: unknown tokenizer kind {other!r} "
                "(char, phoneme, g2p, sentencepiece, symbols, pair)"
            )


def train_tokenizer(
    texts: Sequence[str],
    out_dir: str | Path,
    kind: TokenizerKind = "char",
    vocab_size: int = 256,
    normalizer: TextNormalizerConfig = TextNormalizerConfig(),
    language: str = "en-us",
    pronounce: Pronouncer | None = None,
    dictionary: dict[str, tuple[str, ...]] | None = None,
) -> Tokenizer:
    """Build a tokenizer from training texts and save it to ``out_dir``.

    Args:
        texts: the training text, one transcript or sentence each.
        out_dir: folder that receives ``tokenizer.json`` (and ``tokenizer.model``).
        kind: ``char``, ``phoneme`` (eSpeak NG IPA), ``g2p`` (a G2P model's phonemes), ``unigram``, ``bpe``
            or ``symbols`` (space-separated).
        vocab_size: upper bound on ids including the 5 reserved ones (sentencepiece only).
        normalizer: text normalisation applied before training and encoding.
        language: eSpeak NG voice that phonemises text (``phoneme`` only).
        pronounce: the G2P model that pronounces every word of ``texts`` (``g2p`` only).
        dictionary: word -> phonemes, looked up before ``pronounce`` is asked (``g2p`` only).

    Returns:
        The trained tokenizer.
    """
    texts = list(texts)
    norm = TextNormalizer(normalizer)
    match kind:
        case "char":
            tokenizer: Tokenizer = CharTokenizer.build(texts, norm)
        case "phoneme":
            tokenizer = PhonemeTokenizer.build(texts, norm, language)
        case "unigram" | "bpe":
            tokenizer = SentencePieceTokenizer.train(texts, kind, vocab_size, norm)
        case "symbols":
            tokenizer = SymbolTokenizer.build(texts, norm)
        case "g2p":
            if pronounce is None:
                raise ValueError("a g2p tokenizer needs a G2P model package (tokenizer.g2p)")
            tokenizer = PronunciationTokenizer.build(texts, pronounce, norm, dictionary)
        case _:
            raise ValueError(f"kind must be one of char, phoneme, g2p, unigram, bpe, symbols; got {kind!r}")
    tokenizer.save(out_dir)
    return tokenizer
