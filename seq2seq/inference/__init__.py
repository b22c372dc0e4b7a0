"""Using exported model packages: transcription and evaluation (the decoding itself needs no Lightning)."""
