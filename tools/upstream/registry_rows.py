"""Our rows of SpeechBrain's recipe registry (``tests/recipes/<Dataset>.csv``) for ``check_upstream.sh``.

``write_rows`` writes them from :data:`PLAN` and the project's recipe YAMLs, ``read_rows`` reads
them back, ``add_rows`` appends them to a staged SpeechBrain checkout after checking each row's
flags against its YAML. Used by :mod:`upstream_checks`.
"""

import csv
import glob
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PROJECT = os.path.dirname(os.path.dirname(HERE))
# Our rows: dataset -> (task as upstream names it, data preparation file, YAMLs).
PLAN = {
    "LibriMix": (
        "Target Speaker Extraction",
        "prepare_libri2mix_tse.py",
        ["crossmamba_tse", "transformer_tse", "mamba_tse", "concat_tse"],
    ),
    "WSJ0Mix": (
        "Target Speaker Extraction",
        "prepare_wsj0mix_tse.py",
        ["crossmamba_tse", "transformer_tse"],
    ),
    "FSDSoundScapes": (
        "Target Sound Extraction",
        "prepare_fsdsoundscapes.py",
        [
            "crossmamba_tse",
            "transformer_tse",
            "streaming_crossmamba",
            "streaming_attention",
        ],
    ),
}
# Tiny sizes (as the project's tests/recipe_helpers.py); a row passes those its YAML has.
TINY = "--N=16 --K=20 --num_layers=1 --block_layers=1 --mamba_block_layers=1 --nhead=2 --d_ffn=32"
TINY_STREAMING = "--N=16 --N_encoder=16 --encoder_layers=2 --decoder_layers=1 --nhead=2 --d_ffn=32"
COMMON = "--number_of_epochs=2 --batch_size=2 --num_workers=0 --n_examples=1 --enroll_seconds=0.5"
# The pre-rendered FSDSoundScapes set of make_samples.py (so scaper is not needed), only read.
EXTRA = {
    "FSDSoundScapes": "--prepared_folder=tests/samples/TSE/FSDSoundScapes/rendered"
}
# As upstream's separation rows (tests/recipes/LibriMix.csv), plus the exported model.
CHECKS = (
    "file_exists=[test_results.csv,train_log.txt,log.txt,env.log,train.py,hyperparams.yaml,"
    "pretrained/extractor.ckpt]"
)


def yaml_keys(path):
    """The top-level keys of a YAML file (what ``--key=value`` overrides may name).

    Arguments
    ---------
    path : str
        The YAML file.

    Returns
    -------
    set of str
        Its top-level keys.
    """
    with open(path, encoding="utf-8") as f:
        return set(
            re.findall(r"^([A-Za-z_]\w*):", f.read(), flags=re.MULTILINE)
        )


def write_rows(rows=os.path.join(HERE, "tests_recipes")):
    """Write ``ROWS/<Dataset>.csv`` from :data:`PLAN` and the project's recipe YAMLs.

    Arguments
    ---------
    rows : str
        The folder to write (default: ``tools/upstream/tests_recipes``).
    """
    for dataset, (task, prep, yamls) in PLAN.items():
        source = (
            dataset
            if os.path.isdir(os.path.join(PROJECT, "recipes", dataset))
            else "Libri2Mix"
        )
        folder = f"recipes/{dataset}/tse"
        with open(
            os.path.join(rows, dataset + ".csv"),
            "w",
            newline="",
            encoding="utf-8",
        ) as f:
            writer = csv.writer(f, lineterminator="\n")
            for name in yamls:
                keys = yaml_keys(
                    os.path.join(
                        PROJECT,
                        "recipes",
                        source,
                        "tse",
                        "hparams",
                        name + ".yaml",
                    )
                )
                sizes = TINY_STREAMING if name.startswith("streaming") else TINY
                flags = [f"--data_folder=tests/samples/TSE/{dataset}"]
                options = f"{sizes} {COMMON} {EXTRA.get(dataset, '')}".split()
                flags += [a for a in options if a[2:].split("=")[0] in keys]
                writer.writerow(
                    [
                        task,
                        dataset,
                        f"{folder}/train.py",
                        f"{folder}/hparams/{name}.yaml",
                        f"{folder}/{prep}",
                        f"{folder}/README.md",
                        "",
                        "",
                        " ".join(flags),
                        CHECKS,
                        "",
                    ]
                )
        print(f"{rows}/{dataset}.csv: {len(yamls)} rows")


def read_rows(rows):
    """Read our registry rows.

    Arguments
    ---------
    rows : str
        The folder holding ``<Dataset>.csv`` (rows only).

    Returns
    -------
    dict
        ``{dataset: [raw line, ...]}`` in file order (sorted datasets).
    """
    out = {}
    for path in sorted(glob.glob(os.path.join(rows, "*.csv"))):
        with open(path, encoding="utf-8") as f:
            lines = [line.rstrip("\n") for line in f if line.strip()]
        out[os.path.splitext(os.path.basename(path))[0]] = lines
    return out


def our_hparams(rows):
    """The ``Hparam_file`` of each of our rows.

    Arguments
    ---------
    rows : str
        The folder holding our row CSVs.

    Returns
    -------
    list of str
        Hparam paths, e.g. ``recipes/LibriMix/tse/hparams/crossmamba_tse.yaml``.
    """
    return [
        next(csv.reader([line]))[3]
        for lines in read_rows(rows).values()
        for line in lines
    ]


def label(hparam):
    """Short name of a row: ``<Dataset>/<yaml stem>``.

    Arguments
    ---------
    hparam : str
        The row's Hparam file.

    Returns
    -------
    str
        The label.
    """
    parts = hparam.split("/")
    return f"{parts[1]}/{os.path.splitext(parts[-1])[0]}"


def add_rows(rows):
    """Append our rows to ``tests/recipes/<Dataset>.csv``, creating missing files.

    New files get the header of ``tests/recipes/LibriMix.csv``. Every row must have as many
    fields as that header.

    Arguments
    ---------
    rows : str
        The folder holding our row CSVs.
    """
    with open(
        os.path.join("tests", "recipes", "LibriMix.csv"), encoding="utf-8"
    ) as f:
        header = f.readline()
    width = len(next(csv.reader([header])))
    bad = []
    for dataset, lines in read_rows(rows).items():
        path = os.path.join("tests", "recipes", dataset + ".csv")
        text = (
            open(path, encoding="utf-8").read()
            if os.path.exists(path)
            else header
        )
        if not text.endswith("\n"):
            text += "\n"
        for line in lines:
            fields = next(csv.reader([line]))
            if len(fields) != width:
                bad.append(f"{dataset}.csv: {len(fields)} fields, not {width}")
                continue
            if not os.path.isfile(fields[3]):
                bad.append(f"{label(fields[3])}: no {fields[3]}")
                continue
            keys = yaml_keys(fields[3])
            unknown = [
                a
                for a in fields[8].split()
                if a.startswith("--") and a[2:].split("=")[0] not in keys
            ]
            if unknown:
                bad.append(
                    f"{label(fields[3])}: flags not in the YAML: {' '.join(unknown)}"
                )
        with open(path, "w", encoding="utf-8") as f:
            f.write(text + "\n".join(lines) + "\n")
        print(f"{path}: +{len(lines)} rows")
    if bad:
        print("REASON: " + "; ".join(bad))
        sys.exit(1)
