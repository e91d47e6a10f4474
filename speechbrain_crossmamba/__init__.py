"""speechbrain-crossmamba: CrossMamba for target sound and target speaker extraction,
as a SpeechBrain plugin. Layers live in ``speechbrain_crossmamba.nnet``."""

__version__ = "0.1.0"
