"""Layers: the selective scan, Mamba and CrossMamba blocks (SpeechBrain style)."""
