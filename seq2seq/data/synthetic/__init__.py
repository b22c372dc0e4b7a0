"""Synthetic speech from eSpeak NG: the ctypes binding, a sentence generator and the corpus builder."""
