"""The recipes' hparams files, as SpeechBrain's CI reads them.

Every YAML builds its whole model (no ``!include``); every variable it declares is used by the
recipe's own ``train.py`` (SpeechBrain's ``tests/utils/check_yaml.py`` rule, rewritten here since
SpeechBrain's tests are not installed) and every value ``train.py`` reads is in every YAML of
the recipe; the baselines differ from CrossMamba only in the header and the model lines; and
the model lines of every YAML export a pretrained folder that loads and gives the same output.
"""

import glob
import importlib.util
import os
import re

import pytest
import torch
from hyperpyyaml import load_hyperpyyaml
from recipe_helpers import RECIPES, ROOT, recipe_folder, tiny_sizes, yaml_keys

YAMLS = [
    (recipe, os.path.basename(path))
    for recipe in RECIPES
    for path in sorted(glob.glob(os.path.join(recipe_folder(recipe), "hparams", "*.yaml")))
]
# The run options SpeechBrain's parse_arguments takes: exempt from the rule (check_yaml.py does so).
try:
    from speechbrain.utils.run_opts import RunOptions

    RUN_OPTIONS = set(RunOptions().as_dict())
except ImportError:  # older SpeechBrain
    from speechbrain.core import run_opt_defaults

    RUN_OPTIONS = set(run_opt_defaults)
# How a script may use a variable, for SpeechBrain's rule.
USES = ('["{}"]', "hparams.{}", "modules.{}", 'attr(self.hparams, "{}', 'hparams.get("{}')


def _path(recipe, yaml):
    return os.path.join(recipe_folder(recipe), "hparams", yaml)


def _script(recipe):
    with open(os.path.join(recipe_folder(recipe), "train.py"), encoding="utf-8") as f:
        return f.read()


def yaml_variables(path):
    """The top-level variables of an hparams file that no later line uses with ``!ref``.

    SpeechBrain's rule: a line that starts with ``key:`` declares ``key`` (unless it holds
    ``!apply`` or ``!!``); a ``!ref <key>`` or ``!ref <key[...]>`` on a later line uses it.
    """
    declared = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if len(line) <= 1 or line.startswith("#"):
                continue
            if ":" in line and line[0] not in " \t" and "!apply" not in line and "!!" not in line:
                declared.append(line[: line.index(":")])
            if "!ref" in line:
                for name in re.findall(r"<([^<>\[]*)", line):
                    if name in declared:
                        declared.remove(name)
    return declared


def test_every_recipe_has_its_yamls():
    assert YAMLS == [
        ("LibriMix", "concat_tse.yaml"), ("LibriMix", "crossmamba_tse.yaml"), ("LibriMix", "mamba_tse.yaml"),
        ("LibriMix", "transformer_tse.yaml"), ("WSJ0Mix", "crossmamba_tse.yaml"), ("WSJ0Mix", "transformer_tse.yaml"),
        ("FSDSoundScapes", "crossmamba_tse.yaml"), ("FSDSoundScapes", "streaming_attention.yaml"),
        ("FSDSoundScapes", "streaming_crossmamba.yaml"), ("FSDSoundScapes", "transformer_tse.yaml"),
    ]
    assert not os.path.exists(os.path.join(ROOT, "recipes", "Libri2Mix"))  # SpeechBrain's folder name


@pytest.mark.parametrize("recipe, yaml", YAMLS, ids=lambda v: v)
def test_yaml_is_whole_and_consistent_with_its_train_py(recipe, yaml):
    path, script = _path(recipe, yaml), _script(recipe)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    assert "!include" not in text and "Authors:" in text.split("\n\n")[0]
    unused = [
        name for name in yaml_variables(path)
        if name not in RUN_OPTIONS and not any(use.format(name) in script for use in USES)
    ]
    assert not unused, f"declared in {yaml} but not used by train.py: {unused}"
    keys = set(yaml_keys(path))
    read = set(re.findall(r'hparams\["(\w+)"\]', script)) | set(re.findall(r"self\.hparams\.(\w+)", script))
    read |= {f"modules.{m}" for m in re.findall(r"self\.modules\.(\w+)", script)}
    modules = re.search(r"^modules:\n((?:    .*\n)+)", text, flags=re.MULTILINE).group(1)
    keys |= {f"modules.{m}" for m in re.findall(r"^    (\w+):", modules, flags=re.MULTILINE)}
    assert read <= keys, f"train.py reads what {yaml} lacks: {sorted(read - keys)}"


def _without_model(path):
    """The lines outside the header and the model section (and experiment_name)."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    body = text[text.index("\nseed:") :]
    outside = body[: body.index("# ---- Model")] + body[body.index("# ---- Training") :]
    return [line for line in outside.splitlines() if not line.startswith("experiment_name:")]


@pytest.mark.parametrize(
    "recipe, yaml, base",
    [
        ("LibriMix", "transformer_tse.yaml", "crossmamba_tse.yaml"),
        ("LibriMix", "mamba_tse.yaml", "crossmamba_tse.yaml"),
        ("LibriMix", "concat_tse.yaml", "crossmamba_tse.yaml"),
        ("WSJ0Mix", "transformer_tse.yaml", "crossmamba_tse.yaml"),
        ("FSDSoundScapes", "transformer_tse.yaml", "crossmamba_tse.yaml"),
        ("FSDSoundScapes", "streaming_attention.yaml", "streaming_crossmamba.yaml"),
    ],
)
def test_baselines_change_only_the_model(recipe, yaml, base):
    assert _without_model(_path(recipe, yaml)) == _without_model(_path(recipe, base))
    assert "CrossMamba" not in open(_path(recipe, yaml)).read().split("# ---- Model")[1]


def _recipe_module(recipe):
    spec = importlib.util.spec_from_file_location(f"{recipe}_train", os.path.join(recipe_folder(recipe), "train.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # the __main__ block does not run
    return module


@pytest.mark.parametrize("recipe, yaml", YAMLS, ids=lambda v: v)
def test_model_lines_export_a_loadable_pretrained_folder(recipe, yaml, tmp_path):
    from speechbrain_crossmamba.inference import TargetSpeakerExtraction

    sizes = {arg[2:].split("=")[0]: int(arg.split("=")[1]) for arg in tiny_sizes(recipe, yaml)}
    with open(_path(recipe, yaml), encoding="utf-8") as f:
        hp = load_hyperpyyaml(f, {"data_folder": str(tmp_path), "output_folder": str(tmp_path), **sizes})
    folder = _recipe_module(recipe).export_model(hp["extractor"], hp, _path(recipe, yaml))
    assert folder == os.path.join(str(tmp_path), "pretrained")
    model = TargetSpeakerExtraction.from_hparams(source=folder, savedir=folder)
    rate = hp["sample_rate"]
    mix = torch.randn(1, rate // 4, generator=torch.Generator().manual_seed(0))
    if recipe == "FSDSoundScapes":
        assert model.label_clue and list(model.hparams.classes) == list(hp["classes"])
        clue = model.make_clue(label="Bark")
    else:
        assert not model.label_clue
        clue = torch.randn(1, rate // 2, generator=torch.Generator().manual_seed(1))
    hp["extractor"].eval()
    with torch.no_grad():
        expected = hp["extractor"](mix, clue)
    torch.testing.assert_close(model.extract_batch(mix, clue=clue), expected)


def test_fsdsoundscapes_classes_are_the_prepared_clue_order(monkeypatch, tmp_path):
    folder = recipe_folder("FSDSoundScapes")
    monkeypatch.syspath_prepend(folder)
    from prepare_fsdsoundscapes import CLASSES

    sizes = {a[2:].split("=")[0]: int(a.split("=")[1]) for a in tiny_sizes("FSDSoundScapes", "crossmamba_tse.yaml")}
    with open(os.path.join(folder, "hparams", "crossmamba_tse.yaml")) as f:
        hp = load_hyperpyyaml(f, {"data_folder": "/x", "output_folder": str(tmp_path), **sizes})
    assert tuple(hp["classes"]) == CLASSES and tuple(hp["pretrained_extra"]["classes"]) == CLASSES
    assert hp["num_classes"] == 41 and hp["extractor"].clue_encoder.num_classes == 41 and hp["sample_rate"] == 44100
