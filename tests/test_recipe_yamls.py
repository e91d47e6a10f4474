"""The recipes' YAML files: baselines differ from CrossMamba only in the model lines, and the
FSDSoundScapes class list is the clue order of its preparation."""

import glob
import os

import pytest
from hyperpyyaml import load_hyperpyyaml
from recipe_helpers import ROOT, recipe_folder
from test_streaming import _model_lines as _streaming_model_lines
from test_training import _model_lines

VARIANTS = [
    path
    for recipe in ("Libri2Mix", "WSJ0Mix", "FSDSoundScapes")
    for path in sorted(glob.glob(os.path.join(recipe_folder(recipe), "hparams", "*.yaml")))
    if not os.path.basename(path).startswith(("crossmamba_tse", "streaming"))
]
STREAMING = sorted(glob.glob(os.path.join(recipe_folder("FSDSoundScapes"), "hparams", "streaming_*.yaml")))


def _name(path):
    return os.path.relpath(path, os.path.join(ROOT, "recipes")).replace(os.sep, "/")


def test_every_recipe_has_its_baselines():
    assert {_name(p) for p in VARIANTS} == {
        "Libri2Mix/tse/hparams/concat_tse.yaml", "Libri2Mix/tse/hparams/mamba_tse.yaml",
        "Libri2Mix/tse/hparams/transformer_tse.yaml", "WSJ0Mix/tse/hparams/transformer_tse.yaml",
        "FSDSoundScapes/tse/hparams/transformer_tse.yaml",
    }


@pytest.mark.parametrize("path", VARIANTS, ids=_name)
def test_baselines_change_only_the_model(path):
    base = os.path.join(os.path.dirname(path), "crossmamba_tse.yaml")
    assert _model_lines(path) == _model_lines(base)
    assert "fusion_variant: crossmamba" not in open(path).read()


def test_streaming_twins_change_only_the_decoder():
    assert [os.path.basename(p) for p in STREAMING] == ["streaming_attention.yaml", "streaming_crossmamba.yaml"]
    assert _streaming_model_lines(STREAMING[0]) == _streaming_model_lines(STREAMING[1])
    assert "decoder_variant: attention" in open(STREAMING[0]).read()


def test_fsdsoundscapes_classes_are_the_prepared_clue_order(monkeypatch):
    folder = recipe_folder("FSDSoundScapes")
    monkeypatch.syspath_prepend(folder)
    from prepare_fsdsoundscapes import CLASSES

    with open(os.path.join(folder, "hparams", "crossmamba_tse.yaml")) as f:
        hp = load_hyperpyyaml(f, {"data_folder": "/x", "N": 8, "K": 10, "num_layers": 1, "block_layers": 1,
                                  "mamba_block_layers": 1, "d_ffn": 16, "nhead": 2})
    assert tuple(hp["classes"]) == CLASSES
    assert hp["model"]["num_classes"] == 41 and hp["sample_rate"] == 44100
