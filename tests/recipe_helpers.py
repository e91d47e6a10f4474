"""Running a recipe's ``train.py`` as a user does, at a tiny size, for the recipe tests."""

import csv
import importlib.util
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPES = ("LibriMix", "WSJ0Mix", "FSDSoundScapes")
# Tiny model sizes; each run passes the ones its YAML has (a YAML only holds the sizes its
# model uses: no nhead in a Mamba model, no mamba_block_layers in a Transformer).
TINY = ["--N=16", "--K=20", "--num_layers=1", "--block_layers=1", "--mamba_block_layers=1", "--nhead=2", "--d_ffn=32"]
TINY_STREAMING = ["--N=16", "--N_encoder=16", "--encoder_layers=2", "--decoder_layers=1", "--nhead=2", "--d_ffn=32"]
RUN = ["--number_of_epochs=1", "--batch_size=2", "--num_workers=0", "--n_examples=1", "--noprogressbar"]
# What SpeechBrain's recipe tests look for in the output folder (train.py is copied by
# sb.create_experiment_directory from the calling module).
OUTPUT_FILES = ["test_results.csv", "train_log.txt", "log.txt", "env.log", "train.py", "hyperparams.yaml",
                "pretrained/extractor.ckpt", "pretrained/hyperparams.yaml"]


def recipe_folder(recipe):
    return os.path.join(ROOT, "recipes", recipe, "tse")


def load_prepare(recipe, name):
    """Imports ``recipes/<recipe>/tse/<name>.py`` (recipes are not a package)."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(recipe_folder(recipe), name + ".py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def yaml_keys(path):
    """The top-level keys of a YAML file, in order."""
    with open(path, encoding="utf-8") as f:
        return re.findall(r"^([A-Za-z_]\w*):", f.read(), flags=re.MULTILINE)


def sizes_for(recipe, yaml, sizes):
    """The ``--key=value`` options of ``sizes`` whose key the recipe's YAML has."""
    keys = set(yaml_keys(os.path.join(recipe_folder(recipe), "hparams", yaml)))
    return [arg for arg in sizes if arg[2:].split("=")[0] in keys]


def tiny_sizes(recipe, yaml):
    """The tiny model sizes for ``yaml`` (dual path or streaming)."""
    return sizes_for(recipe, yaml, TINY_STREAMING if yaml.startswith("streaming") else TINY)


def run_recipe(recipe, args, yaml="crossmamba_tse.yaml"):
    """``python train.py hparams/<yaml> <args>`` from the recipe's folder; the completed process."""
    cmd = [sys.executable, "train.py", os.path.join("hparams", yaml), *args]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(cmd, cwd=recipe_folder(recipe), capture_output=True, text=True, env=env, timeout=600)


def train_tiny(recipe, data_folder, output_folder, yaml="crossmamba_tse.yaml", extra=()):
    """One tiny epoch, test and export through the recipe; returns the test ``avg`` row."""
    args = [f"--data_folder={data_folder}", f"--output_folder={output_folder}", *tiny_sizes(recipe, yaml), *RUN]
    proc = run_recipe(recipe, [*args, *extra], yaml)
    assert proc.returncode == 0, proc.stderr[-3000:]
    missing = [f for f in OUTPUT_FILES if not os.path.isfile(os.path.join(output_folder, f))]
    assert not missing, missing
    with open(os.path.join(output_folder, "train.py")) as copied, open(os.path.join(recipe_folder(recipe), "train.py")) as f:
        assert copied.read() == f.read()  # the recipe's own script, not a shared one
    assert "epoch: 1" in open(os.path.join(output_folder, "train_log.txt")).read()
    assert any(name.startswith("CKPT") for name in os.listdir(os.path.join(output_folder, "save")))
    with open(os.path.join(output_folder, "test_results.csv")) as f:
        rows = list(csv.DictReader(f))
    assert rows[-1]["ID"] == "avg" and len(rows) > 1
    return rows[-1]


def extract_with_pretrained(output_folder, mixture, **clue):
    """Loads ``<output_folder>/pretrained`` with ``from_hparams`` and extracts from ``mixture``."""
    from speechbrain_crossmamba.inference import TargetSpeakerExtraction

    folder = os.path.join(output_folder, "pretrained")
    model = TargetSpeakerExtraction.from_hparams(source=folder, savedir=folder)
    return model, model.extract_file(mixture, **clue)


def assert_one_line_error(proc, *words):
    """The run failed with a one-line message holding ``words`` and no traceback."""
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    for word in words:
        assert word in last, last
