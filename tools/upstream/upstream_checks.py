#!/usr/bin/env python3
"""Helpers of ``tools/check_upstream.sh``: SpeechBrain's own recipe checks on a staged tree.

Every subcommand but ``write-rows``/``pins``/``codespell-args`` runs with the current directory at the root
of a staged SpeechBrain checkout (our recipes copied in) and imports SpeechBrain's own test
utilities from there (``tests/utils/recipe_tests.py``), so the checks are SpeechBrain's code,
not re-implementations. Our registry rows are the CSV files of ROWS (one per dataset, rows in
the column layout of SpeechBrain's ``tests/recipes/*.csv``, no header).

Subcommands::

    write-rows [ROWS]            (re)write our rows from the project's YAMLs (default: beside)
    pins CONFIG                  pip specs of the linters pinned in .pre-commit-config.yaml
    codespell-args CONFIG        the codespell hook's arguments, one per line
    add-rows ROWS                append ROWS/<Dataset>.csv to tests/recipes/<Dataset>.csv
    load-yaml ROWS               recipe_tests.load_yaml_test on our Hparam files, one by one
    recipe-tests ROWS OUT LOGS   recipe_tests.run_recipe_tests on our rows; PASS/FAIL per row
"""

import logging
import os
import re
import shutil
import sys

sys.dont_write_bytecode = True

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from registry_rows import add_rows, label, our_hparams, write_rows  # noqa: E402

# Hook repositories of SpeechBrain's .pre-commit-config.yaml -> the pip package holding them.
HOOK_PACKAGES = {
    "ruff-pre-commit": "ruff",
    "yamllint": "yamllint",
    "codespell": "codespell",
    "pre-commit-hooks": "pre-commit-hooks",
}


def _config(path):
    """Read a ``.pre-commit-config.yaml``.

    Arguments
    ---------
    path : str
        The file.

    Returns
    -------
    list of dict
        Its ``repos`` entries.
    """
    import yaml

    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)["repos"]


def pins(config):
    """Print ``name==version`` for every linter pinned in ``config``.

    Arguments
    ---------
    config : str
        SpeechBrain's ``.pre-commit-config.yaml``.
    """
    specs = []
    for repo in _config(config):
        name = repo["repo"].rstrip("/").split("/")[-1]
        if name in HOOK_PACKAGES:
            specs.append(
                f"{HOOK_PACKAGES[name]}=={str(repo['rev']).lstrip('v')}"
            )
    print(" ".join(specs))


def codespell_args(config):
    """Print the codespell hook's ``args``, one per line.

    Arguments
    ---------
    config : str
        SpeechBrain's ``.pre-commit-config.yaml``.
    """
    for repo in _config(config):
        for hook in repo.get("hooks", []):
            if hook["id"] == "codespell":
                print("\n".join(hook.get("args", [])))


class _Errors(logging.Handler):
    """Collects the messages of ERROR log records."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.messages = []

    def emit(self, record):
        """Keep the record's message.

        Arguments
        ---------
        record : logging.LogRecord
            An ERROR (or worse) record.
        """
        self.messages.append(record.getMessage().strip())


def load_yaml(rows):
    """SpeechBrain's ``load_yaml_test`` (``tests/.run-load-yaml-tests.sh``) per Hparam file.

    Arguments
    ---------
    rows : str
        The folder holding our row CSVs.
    """
    from tests.utils.recipe_tests import load_yaml_test

    logging.basicConfig(
        level=logging.INFO,
        format="%(levelname)s %(message)s",
        stream=sys.stdout,
    )
    errors = _Errors()
    logging.getLogger().addHandler(errors)
    # As tests/.run-load-yaml-tests.sh (`python -c`): '' on sys.path, so after load_yaml_test's
    # chdir into the recipe folder, `!name:prepare_x.fn` imports resolve there.
    sys.path.insert(0, "")
    cwd, failed = os.getcwd(), []
    hparams = our_hparams(rows)
    for hparam in hparams:
        errors.messages.clear()
        ok = load_yaml_test(filters_fields=["Hparam_file"], filters=[[hparam]])
        os.chdir(cwd)
        if not ok:
            first = (
                errors.messages[0].replace(cwd + os.sep, "")
                if errors.messages
                else "?"
            )
            failed.append((label(hparam), first))
            print(f"FAILED {label(hparam)}: {first}")
    print(f"load-yaml: {len(hparams) - len(failed)}/{len(hparams)} load")
    if failed:
        names = (
            "all"
            if len(failed) == len(hparams)
            else " ".join(n for n, _ in failed)
        )
        print(
            f"REASON: {len(failed)}/{len(hparams)} cannot load ({names}); first: {failed[0][1][-160:]}"
        )
        sys.exit(1)


def _last_line(path):
    """The last non-empty line of a text file, shortened.

    Arguments
    ---------
    path : str
        The file (may be missing).

    Returns
    -------
    str
        The line, or ``"no output"``.
    """
    if not os.path.exists(path):
        return "no output"
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = [line.strip() for line in f if line.strip()]
    return lines[-1][:200] if lines else "no output"


def recipe_tests(rows, out, logs):
    """SpeechBrain's ``run_recipe_tests`` on our rows (CPU); prints PASS/FAIL per row.

    Arguments
    ---------
    rows : str
        The folder holding our row CSVs.
    out : str
        The runs' output folder (``tests/tmp/`` upstream).
    logs : str
        Where each row's ``stdout.txt``/``stderr.txt`` are copied to.
    """
    from tests.utils.recipe_tests import prepare_test, run_recipe_tests

    logging.basicConfig(
        level=logging.INFO,
        format="%(levelname)s %(message)s",
        stream=sys.stderr,
    )
    filters = dict(filters_fields=["Hparam_file"], filters=[our_hparams(rows)])
    run_recipe_tests(
        run_opts="--device=cpu", output_folder=out, do_checks=True, **filters
    )
    _, hparams, _, checks, _, _ = prepare_test(**filters)
    failed = 0
    for recipe_id in sorted(hparams):
        folder = os.path.join(out, recipe_id)
        name = label(hparams[recipe_id])
        log = os.path.join(logs, "recipe-debug_" + name.replace("/", "_"))
        for stream in ("stdout", "stderr"):
            if os.path.exists(os.path.join(folder, stream + ".txt")):
                shutil.copy(
                    os.path.join(folder, stream + ".txt"), f"{log}.{stream}.txt"
                )
        if os.path.exists(os.path.join(folder, ".passed")):
            print(f"PASS recipe-debug {name}")
            continue
        failed += 1
        match = re.search(r"file_exists=\[(.*?)\]", checks[recipe_id])
        expected = match.group(1).split(",") if match else []
        missing = [
            f
            for f in expected
            if not os.path.exists(os.path.join(folder, f.strip()))
        ]
        if missing and "test_results.csv" not in missing:
            reason = "missing outputs: " + ",".join(missing)
        else:
            reason = _last_line(os.path.join(folder, "stderr.txt"))
        print(f"FAIL recipe-debug {name}: {reason} (log: {log}.stderr.txt)")
    sys.exit(1 if failed else 0)


def main(argv):
    """Dispatch a subcommand.

    Arguments
    ---------
    argv : list of str
        The subcommand and its arguments.
    """
    commands = {
        "write-rows": write_rows,
        "pins": pins,
        "codespell-args": codespell_args,
        "add-rows": add_rows,
        "load-yaml": load_yaml,
        "recipe-tests": recipe_tests,
    }
    if not argv or argv[0] not in commands:
        raise SystemExit(__doc__)
    sys.path.insert(
        0, os.getcwd()
    )  # the staged SpeechBrain checkout: its speechbrain/, tests/
    commands[argv[0]](*argv[1:])


if __name__ == "__main__":
    main(sys.argv[1:])
