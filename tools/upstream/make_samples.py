#!/usr/bin/env python3
"""Build the tiny TSE corpora an upstream SpeechBrain PR ships under ``tests/samples/TSE``.

SpeechBrain's recipe debug tests (``tests/utils/recipe_tests.py``) run every registered YAML on
data that lives in the SpeechBrain repository. Our rows in ``tools/upstream/tests_recipes/``
point at ``tests/samples/TSE/<Dataset>``; this script writes those folders, in the real on-disk
layouts the recipes' data preparations read, with the project's own test builders
(``tests/test_recipe_*.py``):

* ``OUT/LibriMix/Libri2Mix/wav8k/min/...`` (LibriMix generator layout and metadata CSVs),
* ``OUT/WSJ0Mix/wsj0_2mix_extr/wav8k/min/...`` (WSJ0-2mix-extr layout, ``mix``/``s1``/``aux``),
* ``OUT/FSDSoundScapes/FSDSoundScapes/...`` (JAMS specs, FSDKaggle2018 and TAU sources) and the
  pre-rendered ``OUT/FSDSoundScapes/rendered/wav/...`` (the recipe's ``prepared_folder``, only
  read), so scaper is not needed.

Nothing is written into the project (bytecode writing is off). Prints the size of each corpus
and fails when a file exceeds SpeechBrain's ``check-added-large-files`` limit or the total
exceeds ``--max-total-mib``.

Usage::

    python tools/upstream/make_samples.py OUT [--project ROOT] [--seconds S]
"""

import argparse
import importlib
import os
import sys

sys.dont_write_bytecode = True

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_PROJECT = os.path.dirname(os.path.dirname(HERE))
# SpeechBrain's .pre-commit-config.yaml: check-added-large-files --maxkb=1024.
MAX_FILE_KIB = 1024


def _import_first(*names):
    """Import the first test module of ``names`` that exists.

    Arguments
    ---------
    *names : str
        Module names under the project's ``tests/`` folder, in order of preference.

    Returns
    -------
    module
        The imported module.
    """
    for name in names:
        if importlib.util.find_spec(name) is not None:
            return importlib.import_module(name)
    raise SystemExit(
        f"none of the test builders {names} found in the project's tests/"
    )


def build(out, project=DEFAULT_PROJECT, seconds=1.0):
    """Write the three tiny corpora under ``out``.

    Arguments
    ---------
    out : str
        The folder that becomes ``tests/samples/TSE`` (created if needed).
    project : str
        The project root, whose ``tests/`` holds the builders.
    seconds : float
        Base length of the utterances / clips, as in the project's recipe tests.

    Returns
    -------
    list of str
        The dataset folders written, in the order LibriMix, WSJ0Mix, FSDSoundScapes.
    """
    sys.path.insert(0, os.path.join(project, "tests"))
    libri = _import_first("test_recipe_librimix", "test_recipe_libri2mix")
    wsj = _import_first("test_recipe_wsj0mix")
    fsd = _import_first("test_recipe_fsdsoundscapes")
    folders = [
        os.path.join(out, name)
        for name in ("LibriMix", "WSJ0Mix", "FSDSoundScapes")
    ]
    libri.make_libri2mix(folders[0], seconds=seconds)
    wsj.make_wsj0_2mix_extr(folders[1], seconds=seconds)
    fsd.make_fsdsoundscapes(folders[2], seconds=seconds, sample_rate=44100)
    # The rows pass --prepared_folder=tests/samples/TSE/FSDSoundScapes/rendered.
    fsd.prerender(folders[2], os.path.join(folders[2], "rendered"))
    return folders


def sizes(folder):
    """Count the files of ``folder``.

    Arguments
    ---------
    folder : str
        A folder to walk.

    Returns
    -------
    tuple
        ``(number of files, total bytes, (largest bytes, largest path))``.
    """
    files = [
        os.path.join(d, f) for d, _, names in os.walk(folder) for f in names
    ]
    largest = max(((os.path.getsize(f), f) for f in files), default=(0, ""))
    return len(files), sum(os.path.getsize(f) for f in files), largest


def main(argv=None):
    """Build the corpora, print their sizes, exit 1 if over budget.

    Arguments
    ---------
    argv : list of str, optional
        Command-line arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        0 when within budget, 1 otherwise.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", help="output folder (becomes tests/samples/TSE)")
    parser.add_argument(
        "--project", default=DEFAULT_PROJECT, help="the project root"
    )
    parser.add_argument(
        "--seconds", type=float, default=1.0, help="base clip length"
    )
    parser.add_argument(
        "--max-total-mib", type=float, default=8.0, help="budget for all three"
    )
    args = parser.parse_args(argv)
    out = os.path.abspath(args.out)
    folders = build(out, os.path.abspath(args.project), args.seconds)
    ok, total_files, total = True, 0, 0
    for folder in folders:
        n, size, (big, path) = sizes(folder)
        total_files, total = total_files + n, total + size
        print(
            f"{os.path.basename(folder)}: {n} files, {size / 2**20:.2f} MiB, "
            f"largest {big / 1024:.0f} KiB ({os.path.relpath(path, out)})"
        )
        if big > MAX_FILE_KIB * 1024:
            ok = False
            print(
                f"ERROR: {path} exceeds {MAX_FILE_KIB} KiB (check-added-large-files)"
            )
    print(f"total: {total_files} files, {total / 2**20:.2f} MiB under {out}")
    if total > args.max_total_mib * 2**20:
        ok = False
        print(f"ERROR: total exceeds --max-total-mib={args.max_total_mib}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
