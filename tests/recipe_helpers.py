"""Running a recipe's ``train.py`` as a user does, at a tiny size, for the recipe tests."""

import csv
import importlib.util
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = [
    "--N=16", "--K=20", "--num_layers=1", "--block_layers=1", "--mamba_block_layers=1",
    "--nhead=2", "--d_ffn=32", "--number_of_epochs=1", "--batch_size=2", "--num_workers=0",
    "--n_examples=1", "--noprogressbar",
]


def recipe_folder(recipe):
    return os.path.join(ROOT, "recipes", recipe, "tse")


def load_prepare(recipe, name):
    """Imports ``recipes/<recipe>/tse/<name>.py`` (recipes are not a package)."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(recipe_folder(recipe), name + ".py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_recipe(recipe, args, yaml="crossmamba_tse.yaml"):
    """``python train.py hparams/<yaml> <args>`` from the recipe's folder; the completed process."""
    cmd = [sys.executable, "train.py", os.path.join("hparams", yaml), *args]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(cmd, cwd=recipe_folder(recipe), capture_output=True, text=True, env=env, timeout=600)


TINY_STREAMING = [
    "--N=16", "--N_encoder=16", "--encoder_layers=2", "--decoder_layers=1", "--nhead=2",
    "--d_ffn=32", "--number_of_epochs=1", "--batch_size=2", "--num_workers=0", "--n_examples=1",
    "--noprogressbar",
]


def train_tiny(recipe, data_folder, output_folder, yaml="crossmamba_tse.yaml", extra=(), tiny=TINY):
    """One tiny epoch, test and export through the recipe; returns the test ``avg`` row."""
    args = [f"--data_folder={data_folder}", f"--output_folder={output_folder}", *tiny, *extra]
    proc = run_recipe(recipe, args, yaml)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "epoch: 1" in open(os.path.join(output_folder, "train_log.txt")).read()
    assert any(name.startswith("CKPT") for name in os.listdir(os.path.join(output_folder, "save")))
    with open(os.path.join(output_folder, "test_results.csv")) as f:
        rows = list(csv.DictReader(f))
    assert rows[-1]["ID"] == "avg" and len(rows) > 1
    assert os.path.isfile(os.path.join(output_folder, "pretrained", "extractor.ckpt"))
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
