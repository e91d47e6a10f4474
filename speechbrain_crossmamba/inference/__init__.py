"""Pretrained interfaces: target speaker / sound extraction."""

from speechbrain_crossmamba.inference.extraction import TargetSpeakerExtraction
