"""The installed dependencies load together: a broken torch/torchaudio pair fails here, in one
clear test, instead of as an import error in every module."""

import math

import pytest
import torch


def test_torchaudio_loads_and_resamples():
    import torchaudio

    sr_in, sr_out, freq = 16000, 8000, 440.0
    t = torch.arange(sr_in) / sr_in
    wav = torch.sin(2 * math.pi * freq * t)
    out = torchaudio.functional.resample(wav, sr_in, sr_out)
    assert out.shape == (sr_out,)
    # the tone survives: it correlates with a 440 Hz sine at the new rate (edges aside)
    ref = torch.sin(2 * math.pi * freq * torch.arange(sr_out) / sr_out)
    mid = slice(200, sr_out - 200)
    corr = torch.dot(out[mid], ref[mid]) / (out[mid].norm() * ref[mid].norm())
    assert corr > 0.999


def test_torch_and_torchaudio_are_the_pinned_pair():
    import torchaudio

    base = lambda v: v.split("+")[0]  # noqa: E731  (drop a local tag such as +cpu)
    assert base(torch.__version__) == base(torchaudio.__version__), (
        f"torch {torch.__version__} with torchaudio {torchaudio.__version__}: "
        "install the same release of both (pip install -e . -c constraints.txt)"
    )


@pytest.mark.parametrize(
    "module", ["speechbrain", "hyperpyyaml", "sentencepiece", "espeakng_loader", "mir_eval",
               "matplotlib", "soundfile", "scipy", "numpy"],
)  # fmt: skip
def test_dependency_imports(module):
    __import__(module)
