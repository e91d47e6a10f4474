"""The installed dependencies load together and are those the project declares: a broken
torch/torchaudio pair fails here, in one clear test, instead of as an import error in every
module; so does a package outside its setup.cfg range or a pin that setup.cfg would refuse."""

import configparser
import importlib.metadata
import math
import pathlib

import pytest
import torch
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _pins():
    """constraints.txt as {canonical name: pinned version}; every line must be an exact pin."""
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==", f"not an exact pin: {line}"
            pins[canonicalize_name(req.name)] = spec.version
    return pins


def _declared():
    """setup.cfg's install_requires and extras as {group: [Requirement]}."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")

    def parse(text):
        return [Requirement(x) for x in text.splitlines() if x.strip()]

    groups = {"install_requires": parse(cfg["options"]["install_requires"])}
    groups.update(
        {k: parse(v) for k, v in cfg["options.extras_require"].items()}
    )
    return groups


def _installed(name):
    """The installed version without a local tag (+cpu, +cu130), or None."""
    try:
        return importlib.metadata.version(name).split("+")[0]
    except importlib.metadata.PackageNotFoundError:
        return None


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
    """The loaded torch and torchaudio are the releases constraints.txt pins, one release."""
    import torchaudio

    pins = _pins()
    assert pins["torch"] == pins["torchaudio"], "constraints.txt pins two"
    loaded = {"torch": torch.__version__, "torchaudio": torchaudio.__version__}
    for name, version in loaded.items():
        assert version.split("+")[0] == pins[name], (
            f"torch {loaded['torch']} with torchaudio {loaded['torchaudio']}; constraints.txt "
            f"pins {pins[name]} for both: pip install -e . -c constraints.txt"
        )


def test_installed_packages_are_in_the_setup_cfg_ranges():
    """Every requirement is installed within its declared range; an extra's, when installed."""
    checked = []
    for group, requirements in _declared().items():
        for req in requirements:
            version = _installed(req.name)
            if version is None:
                assert group != "install_requires", f"{req.name} is missing"
                continue
            assert req.specifier.contains(version, prereleases=True), (
                f"{req.name} {version} is outside setup.cfg's {req} ({group})"
            )
            checked.append(req.name)
    assert {"torch", "torchaudio", "speechbrain", "pytest"} <= set(checked)


def test_every_pin_is_in_the_setup_cfg_ranges():
    """constraints.txt pins a version of every declared package but the [cuda] extra's, each
    inside its range (else the README's install command cannot resolve)."""
    pins = _pins()
    for group, requirements in _declared().items():
        if group == "cuda":  # GPU kernels: not pinned, not in the tested set
            continue
        for req in requirements:
            pin = pins.get(canonicalize_name(req.name))
            assert pin is not None, f"constraints.txt lacks {req.name}"
            assert req.specifier.contains(pin, prereleases=True), (
                f"constraints.txt pins {req.name}=={pin}, outside setup.cfg's {req} ({group})"
            )


@pytest.mark.parametrize(
    "module", ["speechbrain", "hyperpyyaml", "sentencepiece", "espeakng_loader", "mir_eval",
               "matplotlib", "soundfile", "scipy", "numpy"],
)  # fmt: skip
def test_dependency_imports(module):
    __import__(module)
