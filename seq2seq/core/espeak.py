"""A small ctypes binding to the eSpeak NG library shipped by ``espeakng_loader``.

eSpeak NG is a process-global C library (one voice, one callback, one set of parameters at a time), so every
call goes through one lock. For parallel synthesis use separate processes (see ``corpus.py``), each of which
initialises its own copy of the library.
"""

from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass

import numpy as np

# Output sample rate of every eSpeak NG voice (espeak_Initialize returns it; checked at load time).
ESPEAK_SAMPLE_RATE = 22050

# Constants from espeak-ng/speak_lib.h.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_PHONEMES_IPA = 0x02
_EE_OK = 0
_PARAMETERS = {"rate": 1, "volume": 2, "pitch": 3, "range": 4}

_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

ENGLISH_LANGUAGES = (
    "en-us",
    "en",
    "en-029",
    "en-gb-scotland",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-gb-x-rp",
    "en-us-nyc",
)
"""English eSpeak NG languages (accents); ``en`` is British English."""


class EspeakError(RuntimeError):
    """eSpeak NG could not be loaded or refused a request."""


@dataclass(frozen=True)
class Voice:
    """One eSpeak NG speaking style.

    Attributes:
        language: eSpeak language name, e.g. ``"en-us"``.
        variant: variant from ``espeak-ng-data/voices/!v`` (``"m3"``, ``"f2"``); ``""`` is the default.
        rate: speaking rate in words per minute (eSpeak accepts 80-450).
        pitch: base pitch, 0-100 (50 is the default).
        pitch_range: pitch range, 0-100 (0 is monotone, 50 the default).
    """

    language: str = "en-us"
    variant: str = ""
    rate: int = 175
    pitch: int = 50
    pitch_range: int = 50

    def __post_init__(self) -> None:
        if not 80 <= self.rate <= 450:
            raise ValueError(f"Voice.rate must be in [80, 450] words per minute, got {self.rate}")
        if not 0 <= self.pitch <= 100:
            raise ValueError(f"Voice.pitch must be in [0, 100], got {self.pitch}")
        if not 0 <= self.pitch_range <= 100:
            raise ValueError(f"Voice.pitch_range must be in [0, 100], got {self.pitch_range}")

    @property
    def name(self) -> str:
        """The name eSpeak's ``SetVoiceByName`` expects: ``language[+variant]``."""
        return f"{self.language}+{self.variant}" if self.variant else self.language


class _Engine:
    """The loaded library plus the callback that collects samples; one per process."""

    def __init__(self) -> None:
        import espeakng_loader

        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self._declare_signatures()
        rate = self.lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(), 0
        )
        if rate != ESPEAK_SAMPLE_RATE:
            raise EspeakError(f"espeak_Initialize returned {rate}, expected {ESPEAK_SAMPLE_RATE} Hz")
        self.chunks: list[np.ndarray] = []
        # Keep a reference: ctypes frees the trampoline when the Python object dies.
        self._callback = _CALLBACK(self._collect)
        self.lib.espeak_SetSynthCallback(self._callback)
        self.voice: Voice | None = None

    def _declare_signatures(self) -> None:
        lib = self.lib
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetSynthCallback.argtypes = [_CALLBACK]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int, ctypes.c_int]
        lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]

    def _collect(self, samples, num_samples, _events) -> int:
        if num_samples > 0:
            self.chunks.append(np.ctypeslib.as_array(samples, shape=(num_samples,)).copy())
        return 0  # 0 = keep synthesising

    def set_voice(self, voice: Voice) -> None:
        if voice == self.voice:
            return
        if self.lib.espeak_SetVoiceByName(voice.name.encode()) != _EE_OK:
            raise EspeakError(f"eSpeak NG has no voice {voice.name!r}")
        # Setting a voice resets the parameters, so they are applied after it.
        for key, value in (("rate", voice.rate), ("pitch", voice.pitch), ("range", voice.pitch_range)):
            self.lib.espeak_SetParameter(_PARAMETERS[key], value, 0)
        self.voice = voice

    def synthesize(self, text: str) -> np.ndarray:
        data = text.encode("utf-8") + b"\0"
        buffer = ctypes.create_string_buffer(data, len(data))
        self.chunks = []
        # Noise sources (Klatt voices, breath) draw from a random generator that would otherwise carry
        # state from earlier calls, making a clip depend on what this process spoke before.
        self.lib.espeak_ng_SetRandSeed(0)
        status = self.lib.espeak_Synth(buffer, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        if status != _EE_OK:
            raise EspeakError(f"espeak_Synth failed with status {status} for {text[:40]!r}")
        self.lib.espeak_Synchronize()
        if not self.chunks:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate(self.chunks).astype(np.float32) / 32768.0

    def phonemize(self, text: str) -> str:
        data = ctypes.create_string_buffer(text.encode("utf-8"))
        pointer = ctypes.c_void_p(ctypes.addressof(data))
        pieces = []
        # espeak_TextToPhonemes consumes one clause per call and advances the pointer (NULL at the end).
        while pointer.value:
            out = self.lib.espeak_TextToPhonemes(ctypes.byref(pointer), _CHARS_UTF8, _PHONEMES_IPA)
            if out:
                pieces.append(out.decode("utf-8").strip())
        return " ".join(p for p in pieces if p)


_LOCK = threading.Lock()
_ENGINE: _Engine | None = None


def _engine() -> _Engine:
    global _ENGINE
    if _ENGINE is None:
        try:
            _ENGINE = _Engine()
        except OSError as error:
            raise EspeakError(f"cannot load libespeak-ng: {error}") from None
    return _ENGINE


def synthesize(text: str, voice: Voice = Voice()) -> np.ndarray:
    """Speak ``text`` with eSpeak NG.

    Args:
        text: UTF-8 text to speak.
        voice: language, variant, rate and pitch.

    Returns:
        (N,) float32 waveform in [-1, 1] at ``ESPEAK_SAMPLE_RATE`` (22050 Hz).
    """
    with _LOCK:
        engine = _engine()
        engine.set_voice(voice)
        return engine.synthesize(text)


def phonemize(text: str, voice: str = "en-us") -> str:
    """IPA phonemes for ``text`` as eSpeak NG pronounces it.

    Args:
        text: UTF-8 text.
        voice: eSpeak voice (language) name, e.g. ``"en-us"``.

    Returns:
        IPA string, words separated by spaces, clauses joined by a space.
    """
    with _LOCK:
        engine = _engine()
        engine.set_voice(Voice(language=voice))
        return engine.phonemize(text)
