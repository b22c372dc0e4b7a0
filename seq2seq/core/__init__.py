"""Foundations every layer may use: configs, audio, text, eSpeak NG, model packages, safe paths."""
