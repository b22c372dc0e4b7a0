"""Scoring a package on a manifest: ASR (WER/CER) and TTS (mel distances, round-trip CER)."""
