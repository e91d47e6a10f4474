"""The paper's comparison on this machine: both tasks, both hosts, three seeds, two budgets, speed.

One command (resumable: a finished run is kept and a killed one resumes from its checkpoint)
trains every variant through the shared recipe (``speechbrain_crossmamba.training.main``; the
best validation checkpoint is tested) and writes ``docs/results.md``, ``docs/results.json`` and
plots next to them after every run, so the report always holds what is finished. The run
folders (``results/paper_table``, with checkpoints) are not committed; ``docs/results.json`` is,
and a fresh clone keeps the runs it records (``--fresh`` trains them again).

- **Tasks and hosts** (``COMBOS``): SynthSpeakers (enrollment clue) and SynthEvents (label clue),
  each on the SepFormer-style dual path (CrossMamba, cross-attention, plain Mamba, concat and
  FiLM fusion) and on the Waveformer-style streaming host (CrossMamba decoder against windowed
  causal cross-attention). The paper pairs speakers with the dual path and events with the
  streaming host; those two run first and get every seed.
- **Seeds**: ``--seeds`` (default three) for CrossMamba, the attention baselines and Mamba on
  the paper's two pairings; concat, FiLM and the other two combinations get the first seed.
- **Budgets**: *equal steps* (every variant the same epochs) and *equal minutes* (no epoch
  started after the combination's minutes in ``MINUTES``, times ``--scale``: the recipe's
  ``max_train_minutes`` rule; CrossMamba too). Both come from one training run per variant,
  tested where each budget ends.
- **Quality**: SI-SNRi and SDRi (and PESQ / STOI on speech where the ``[metrics]`` extra is
  installed): mean over seeds, the spread over seeds, and the 95 % CI over test mixtures.
- **Speed** (``benchmarks/models.py`` cases, each in a fresh process, ``cpu`` scan backend):
  inference of the speaker models at 2-32 s on both offline hosts, time and peak memory, at the
  trained recipe's model configuration (``_speaker_model_lines``: frames, widths, outputs and
  gates of ``hparams/crossmamba_tse.yaml``; the report names the configuration each row was
  timed at). The streaming per-chunk latency of both decoders is not timed here: the report
  cites ``docs/streaming.json``, the committed output of ``python benchmarks/streaming.py --out
  docs/streaming.json``, so one figure per configuration is quoted everywhere.
- **Provenance**: every run's rows keep the stamp of the process that trained them (command, CPU,
  cores, torch; the date is ``finished``), the speed rows that of the command that timed them;
  the report's machine lines and the prose's core counts, t-quantiles and ratios are computed
  from those rows, not typed.
- **Claims**: ``paper_report.quality_claims`` and ``speed_claims`` (held / not held / undecided /
  not measurable here).

Usage::

    python benchmarks/paper_table.py                      # everything (hours on 2 cores)
    python benchmarks/paper_table.py --report             # rewrite the report from finished runs
    python benchmarks/paper_table.py --fresh              # train again the runs the report holds
    python benchmarks/paper_table.py --speed-only         # time the speed tables again, then report
    python benchmarks/paper_table.py --only speakers/dualpath --seeds 1234 --scale 0.5 \
        --work results/quick --out results/quick       # beside the committed table
    python benchmarks/paper_table.py --batch_size=8       # other --key=value: recipe overrides
"""

import argparse
import csv
import glob
import json
import math
import os
import re
import shutil
import statistics
import time

from models import machine_stamp, run_case  # benchmarks/models.py, next to this file
from paper_report import load_json, write_all  # benchmarks/paper_report.py

from speechbrain_crossmamba.lobes.models import CONFIGS
from speechbrain_crossmamba.nnet._cpu_kernels import cpu_kernels

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DUAL = list(CONFIGS)  # CrossMamba-, Transformer-, Mamba-, concat-, FiLM-TSE
STREAM = {"CrossMamba-TSE": "crossmamba", "Attention-TSE": "attention"}
SEEDED = ("CrossMamba-TSE", "Transformer-TSE", "Mamba-TSE", "Attention-TSE")
# (task, host): the recipe YAML, its variants, the equal-steps budget (epochs of `epoch_size`
# mixtures, batch 4) and any model override. The first two are the paper's own pairings. The
# label dual path runs at the speaker recipe's 16 ms frames (its own 4 ms frames make a step of
# 4 s audio cost ~3.5 s here).
COMBOS = {
    ("events", "streaming"): {"yaml": "hparams/streaming_crossmamba_label.yaml",
                              "variants": list(STREAM), "epochs": 6, "epoch_size": 200},
    ("speakers", "dualpath"): {"yaml": "hparams/crossmamba_tse.yaml", "variants": DUAL,
                               "epochs": 4, "warm_start_epochs": 2, "epoch_size": 700},
    ("events", "dualpath"): {"yaml": "hparams/crossmamba_tse_label.yaml", "variants": DUAL,
                             "epochs": 5, "epoch_size": 200, "overrides": ["--model={kernel_size: 128}"]},
    ("speakers", "streaming"): {"yaml": "hparams/streaming_crossmamba_tse.yaml",
                                "variants": list(STREAM), "epochs": 6, "epoch_size": 200},
}
# The equal-minutes budgets (train-log minutes): what CrossMamba's first-seed run took when the
# table was first run (docs/results.json at commit 79ae879 onwards, before the `cpu` kernels'
# flush-to-zero change, commit 8c87776). The report sets each against the minutes CrossMamba's
# equal-steps runs take in the rows (its "Budgets" table): where the budget is the larger,
# CrossMamba trains on past its equal steps, like every other variant faster than the budget.
MINUTES = {("events", "streaming"): 4.22, ("speakers", "dualpath"): 5.41, ("events", "dualpath"): 3.7,
           ("speakers", "streaming"): 1.6}
PAIRINGS = [("events", "streaming"), ("speakers", "dualpath")]  # every seed; the others: the first
SPEED_LENGTHS = (2, 4, 8, 16, 32)
SPEED_VARIANTS = ("CrossMamba-TSE", "Transformer-TSE", "Mamba-TSE")


def variant_overrides(host, variant):
    """The recipe overrides that pick ``variant`` on ``host``.

    Example
    -------
    >>> variant_overrides("dualpath", "Mamba-TSE"), variant_overrides("streaming", "Attention-TSE")
    (['--block_variant=mamba', '--fusion_variant=mamba'], ['--decoder_variant=attention'])
    """
    if host == "streaming":
        return [f"--decoder_variant={STREAM[variant]}"]
    block, fusion = CONFIGS[variant]
    return [f"--block_variant={block}", f"--fusion_variant={fusion}"]


def queue(combos, seeds, variants=None):
    """The runs in order: every combination's first seed (CrossMamba first), then the second
    seed of the paper's pairings' seeded variants, then the third: a run cut short still has every combination, and the seeds it has are complete.

    Example
    -------
    >>> q = queue([("speakers", "dualpath"), ("events", "dualpath")], [1, 2])
    >>> [(v, s) for _, v, s in q][:2], [(v, s) for _, v, s in q][10:], len(q)
    ([('CrossMamba-TSE', 1), ('Transformer-TSE', 1)], [('CrossMamba-TSE', 2), ('Transformer-TSE', 2), ('Mamba-TSE', 2)], 13)
    """
    runs = [(c, v, seeds[0]) for c in combos for v in COMBOS[c]["variants"]]
    runs += [(c, v, s) for s in seeds[1:] for c in combos if c in PAIRINGS
             for v in COMBOS[c]["variants"] if v in SEEDED]
    return [r for r in runs if variants is None or r[1] in variants]


def epoch_lines(train_log):
    """[(epoch, steps, minutes)] of the epoch lines of a recipe's ``train_log.txt`` (SpeechBrain
    logs a number outside [1, 100) in scientific notation).

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "log.txt")
    >>> text = "epoch: 1, lr: 1e-3, steps: 50, minutes: 7.50e-01, stage: x - a\\n"
    >>> text += "epoch: 2, lr: 1e-3, steps: 100, minutes: 1.05e+02 - a\\nEpoch loaded: 2 - test\\n"
    >>> _ = open(path, "w").write(text)
    >>> epoch_lines(path)
    [(1, 50, 0.75), (2, 100, 105.0)]
    """
    pattern = re.compile(r"^epoch: (\d+),.*steps: (\d+), minutes: ([-+.\deE]+)")
    with open(train_log) as f:
        found = [(int(m[1]), int(m[2]), float(m[3])) for m in map(pattern.match, f) if m]
    if not found:
        raise RuntimeError(f"{train_log}: no epoch line")
    return found


def mean_ci(values):
    """Mean and the half-width of its 95 % confidence interval (1.96 standard errors).

    Example
    -------
    >>> [round(v, 3) for v in mean_ci([1.0, 3.0])]
    [2.0, 1.96]
    """
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, float("nan")
    return mean, 1.96 * statistics.stdev(values) / math.sqrt(len(values))


def mixture_means(folder):
    """Means and CIs over the test mixtures of ``test_results.csv`` (a metric some rows lack,
    e.g. PESQ, over the rows that have it)."""
    with open(os.path.join(folder, "test_results.csv")) as f:
        rows = [r for r in csv.DictReader(f) if r["ID"] != "avg"]
    out = {"n_test": len(rows)}
    for key in ("si-snri", "sdri", "si-snri-interferer-clue", "pesq", "pesqi", "stoi", "stoii"):
        values = [float(r[key]) for r in rows if r.get(key) not in (None, "")]
        if values:
            out[key], out[key + "_ci"] = mean_ci(values)
    return out


def _recipe(out, combo, variant, seed, args, epochs, minutes=None):
    """Runs the recipe in this process (it resumes from ``out``'s checkpoints) for ``epochs``,
    starting no epoch after ``minutes`` of training (the recipe's ``max_train_minutes``)."""
    from speechbrain_crossmamba.training import main

    spec = COMBOS[combo]
    argv = [os.path.join(ROOT, spec["yaml"]), f"--output_folder={out}", f"--data_folder={args.data}",
            f"--seed={seed}", f"--number_of_epochs={epochs}", f"--epoch_size={spec['epoch_size']}",
            f"--max_train_minutes={'null' if minutes is None else minutes}", "--n_examples=0",
            "--noprogressbar", *variant_overrides(combo[1], variant), *spec.get("overrides", [])]
    if "warm_start_epochs" in spec:
        argv.append(f"--warm_start_epochs={spec['warm_start_epochs']}")
    given = {a.split("=")[0] for a in args.train_args}  # a recipe override given here wins
    main([a for a in argv if a.split("=")[0] not in given] + args.train_args)


def run_config(combo, variant, seed, args):
    """The run folder of one variant and the configuration that identifies its results (its
    ``reference_minutes`` is the equal-minutes budget: ``--minutes``, or ``MINUTES`` times
    ``--scale``)."""
    task, host = combo
    minutes = args.minutes if args.minutes is not None else round(MINUTES[combo] * args.scale, 2)
    config = {"combo": combo, "variant": variant, "seed": seed,
              "epochs": max(1, round(COMBOS[combo]["epochs"] * args.scale)), "spec": COMBOS[combo],
              "train_args": args.train_args, "reference_minutes": minutes}
    return os.path.join(args.work, task, host, variant, str(seed)), config


def restore(recorded, args):
    """Puts the runs of a report's ``results.json`` (``recorded``) back into ``args.work`` as
    finished runs, so that a fresh clone continues the committed table instead of training it
    again (the run folders are not committed: they hold checkpoints). Only a report of the same
    scale and recipe overrides is used, and only its runs of today's budgets; a run folder that
    exists is left as it is. Returns how many runs were restored.

    Example
    -------
    >>> import tempfile
    >>> args = argparse.Namespace(work=tempfile.mkdtemp(), scale=1.0, train_args=[], minutes=None,
    ...                           fresh=False)
    >>> row = {"task": "events", "host": "streaming", "variant": "CrossMamba-TSE", "seed": 1,
    ...        "reference_minutes": 4.22, "epochs": 6, "steps": 300, "si-snri": 1.7}
    >>> old = dict(row, variant="Attention-TSE", reference_minutes=3.0)  # of another budget
    >>> recorded = {"table": {"scale": 1.0, "train_args": []},
    ...             "runs": [dict(r, budget=b) for r in (row, old) for b in ("steps", "minutes")]}
    >>> restore(recorded, args), restore(recorded, args)
    (1, 0)
    >>> run(("events", "streaming"), "CrossMamba-TSE", 1, args)[0]["si-snri"]  # no training
    1.7
    >>> args.scale = 2.0  # another budget in the same folder: refused, not deleted
    >>> run(("events", "streaming"), "CrossMamba-TSE", 1, args)  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    RuntimeError: ... holds a finished run of another configuration ...
    """
    table = recorded.get("table") or recorded.get("machine") or {}  # "machine": reports before per-row stamps
    if table.get("scale") != args.scale or table.get("train_args", []) != args.train_args:
        return 0
    runs = {}
    for row in recorded.get("runs", []):
        runs.setdefault((row["task"], row["host"], row["variant"], row["seed"]), {})[row["budget"]] = row
    restored = 0
    for (task, host, variant, seed), rows in sorted(runs.items(), key=str):
        if (task, host) not in COMBOS or set(rows) != {"steps", "minutes"}:
            continue
        out, config = run_config((task, host), variant, seed, args)
        if (os.path.exists(out) or config["epochs"] != rows["steps"]["epochs"]
                or config["reference_minutes"] != rows["steps"]["reference_minutes"]):
            continue
        os.makedirs(out)
        json.dump(config, open(os.path.join(out, "paper_config.json"), "w"))
        for budget, row in rows.items():
            json.dump(row, open(os.path.join(out, f"{budget}.json"), "w"))
        restored += 1
    return restored


def run(combo, variant, seed, args):
    """Trains and tests one variant at both budgets (cached in ``args.work``); returns its rows.

    Both budgets come from one training run, tested where each ends: first up to the
    equal-steps epochs but no epoch started after the equal-minutes budget (the recipe's own
    equal-time rule); a variant slower than the budget stops there (its equal-minutes result)
    and then goes on to the equal steps; a faster one reaches the equal steps first and then
    goes on, starting no epoch after the minutes.
    """
    task, host = combo
    out, config = run_config(combo, variant, seed, args)
    epochs, cap = config["epochs"], config["reference_minutes"]
    config_file = os.path.join(out, "paper_config.json")
    rows = {b: json.load(open(os.path.join(out, f"{b}.json"))) for b in ("steps", "minutes")
            if os.path.exists(os.path.join(out, f"{b}.json"))}
    if not os.path.exists(config_file) or json.load(open(config_file)) != json.loads(json.dumps(config)):
        if rows and not args.fresh:  # never delete a finished run silently
            raise RuntimeError(f"{out} holds a finished run of another configuration (--scale, "
                               "--minutes or recipe overrides): pass another --work, or --fresh")
        shutil.rmtree(out, ignore_errors=True)  # another configuration or budget: start again
        os.makedirs(out)
        json.dump(config, open(config_file, "w"))
        rows = {}
    base = {"task": task, "host": host, "variant": variant, "seed": seed, "reference_minutes": cap,
            "machine": machine_stamp()}  # where this process trains: each row keeps its own

    def train_and_test(budget, target, minutes):
        """Trains and tests; the result is ``budget``'s, or the equal-minutes one where the
        minutes ran out before ``target`` epochs."""
        print(f"== {task}/{host} {variant} seed {seed}: {budget} budget, up to {target} epochs"
              + ("" if minutes is None else f", none started after {minutes:.2f} min"), flush=True)
        _recipe(out, combo, variant, seed, args, target, minutes)
        epoch, steps, minutes = epoch_lines(os.path.join(out, "train_log.txt"))[-1]
        budget = "minutes" if epoch < target else budget
        rows[budget] = dict(base, budget=budget, finished=time.strftime("%Y-%m-%d %H:%M"), epochs=epoch,
                            steps=steps, minutes_trained=minutes, **mixture_means(out))
        shutil.copy(os.path.join(out, "test_results.csv"), os.path.join(out, f"test_results_{budget}.csv"))
        json.dump(rows[budget], open(os.path.join(out, f"{budget}.json"), "w"))
        print(f"   SI-SNRi {rows[budget]['si-snri']:.2f} dB after {steps} steps, {minutes:.1f} min", flush=True)
        return rows[budget]

    if not rows:  # equal steps, unless the minutes run out first (a variant slower than the budget)
        train_and_test("steps", epochs, cap)
    if "steps" not in rows:
        train_and_test("steps", epochs, None)
    if "minutes" not in rows:
        if rows["steps"]["minutes_trained"] >= cap:  # no epoch would start
            rows["minutes"] = dict(rows["steps"], budget="minutes")
            json.dump(rows["minutes"], open(os.path.join(out, "minutes.json"), "w"))
        else:
            train_and_test("minutes", 100000, cap)
    return [rows["steps"], rows["minutes"]]


TRAINED_MODEL_KEYS = ("kernel_size", "N_encoder", "K", "num_layers", "num_spks", "fusion_gate")


def _speaker_model_lines():
    """The model lines of the trained speaker recipe that are not the variant's choices: its frames,
    widths, layers, outputs (target and rest) and fusion gates, as the recipe evaluates them with
    its defaults (``hparams/crossmamba_tse.yaml``, loaded; the variants train with the same lines)."""
    from hyperpyyaml import load_hyperpyyaml

    with open(os.path.join(ROOT, COMBOS[("speakers", "dualpath")]["yaml"])) as f:
        model = load_hyperpyyaml(f)["model"]
    return "\n".join(f"{key}: {model[key]}" for key in TRAINED_MODEL_KEYS)


def _model_defaults():
    """The model YAML's own values (``hparams/models/tse.yaml``) of ``TRAINED_MODEL_KEYS``."""
    import yaml

    class Plain(yaml.SafeLoader):
        """Reads the YAML's structure only: a tagged node (``!ref``, ``!new``) as plain data."""

    Plain.add_multi_constructor("!", lambda loader, suffix, node: None)
    with open(os.path.join(ROOT, "hparams", "models", "tse.yaml")) as f:
        model = yaml.load(f, Loader=Plain)
    return {key: model[key] for key in TRAINED_MODEL_KEYS}


def speed(args):
    """Inference cases of the speaker models, each in a fresh process, at the trained recipe's model
    lines; returns them. (The streaming latency is ``docs/streaming.json``'s: see the module doc.)"""
    cases = []
    overrides = _speaker_model_lines()
    for host in ("dualpath", "singlepath"):
        for variant in SPEED_VARIANTS:
            for seconds in args.lengths:
                case = {"size": "cpu", "host": host, "config": variant, "clue": "enrollment",
                        "seconds": float(seconds), "reps": args.reps, "threads": args.threads,
                        "backend": "cpu", "overrides": overrides}
                r = run_case(case, timeout=600)
                cases.append(r)
                print(f"  {host:10s} {variant:16s} {seconds:4g} s  {r.get('ms', float('nan')):9.1f} ms  "
                      f"+{r.get('extra_mb', float('nan')):.0f} MB  {r['status']}", flush=True)
    return cases


def collect(work):
    """Every finished run's rows under ``work``."""
    rows = []
    for path in sorted(glob.glob(os.path.join(work, "*", "*", "*", "*", "*.json"))):
        if os.path.basename(path) in ("steps.json", "minutes.json"):
            rows.append(json.load(open(path)))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=[f"{t}/{h}" for t, h in COMBOS],
                        help="task/host combinations (default: all four)")
    parser.add_argument("--variants", nargs="+", choices=DUAL + list(STREAM), help="default: all")
    parser.add_argument("--seeds", nargs="+", type=int, default=[1234, 2, 3])
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies every equal-steps budget")
    parser.add_argument("--minutes", type=float, default=None,
                        help="equal-minutes budget of every combination (default: MINUTES times --scale)")
    parser.add_argument("--lengths", nargs="+", type=float, default=list(SPEED_LENGTHS))
    parser.add_argument("--streaming", default=os.path.join(ROOT, "docs", "streaming.json"),
                        help="the streaming latency the report cites (benchmarks/streaming.py --out)")
    parser.add_argument("--reps", type=int, default=3, help="timed forwards per speed case (min)")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--no-speed", action="store_true", help="skip the speed tables")
    parser.add_argument("--report", action="store_true", help="only rewrite the report from finished runs")
    parser.add_argument("--speed-only", action="store_true", help="only (re)time the speed tables, then report")
    parser.add_argument("--fresh", action="store_true",
                        help="train every run again (default: keep the runs recorded in the report)")
    parser.add_argument("--data", default=os.path.join(ROOT, "data"), help="synthetic corpora folder")
    parser.add_argument("--work", default=os.path.join(ROOT, "results", "paper_table"), help="runs folder")
    parser.add_argument("--out", default=os.path.join(ROOT, "docs"), help="report folder")
    args, args.train_args = parser.parse_known_args()  # the rest: recipe overrides (--key=value)
    combos = [tuple(c.split("/")) for c in args.only] if args.only else list(COMBOS)
    os.makedirs(args.work, exist_ok=True)
    stamp_file = os.path.join(args.work, "speed.json")
    recorded = {} if args.fresh else (load_json(os.path.join(args.out, "results.json")) or {})
    if restore(recorded, args):
        print(f"kept the runs recorded in {os.path.join(args.out, 'results.json')} (--fresh trains them again)")
    if recorded.get("speed") and not os.path.exists(stamp_file):  # none with --fresh
        speed_rows = {k: v for k, v in recorded["speed"].items() if k != "streaming"}  # older reports'
        json.dump(speed_rows, open(stamp_file, "w"))  # own latency runs: superseded by --streaming
    table_file = os.path.join(args.work, "stamp.json")
    if (recorded.get("table") or recorded.get("machine")) and not os.path.exists(table_file):
        table = recorded.get("table") or recorded["machine"]  # the recorded table's configuration
        json.dump({k: v for k, v in table.items() if k not in ("device", "torch", "date")},
                  open(table_file, "w"))
    if args.speed_only or (not args.report and not args.no_speed and not os.path.exists(stamp_file)):
        print("== speed ==", flush=True)
        json.dump({"inference": speed(args), "stamp": machine_stamp()}, open(stamp_file, "w"))
    args.trained_model = _speaker_model_lines()  # the report names what the speed rows timed against it
    args.model_defaults = _model_defaults()
    if not args.report and not args.speed_only:
        # the table's configuration; the machine and date of each run are in its own rows
        table = {"command": machine_stamp()["command"], "seeds": args.seeds, "scale": args.scale,
                 "train_args": args.train_args, "combos": ["/".join(c) for c in combos]}
        json.dump(table, open(os.path.join(args.work, "stamp.json"), "w"))
        cpu_kernels()  # built (or loaded) before any run is timed
        for combo, variant, seed in queue(combos, args.seeds, args.variants):
            try:
                run(combo, variant, seed, args)
            except (Exception, SystemExit) as error:  # one failed run must not lose the others
                print(f"!! {'/'.join(combo)} {variant} seed {seed} failed: {error}", flush=True)
                continue
            write_all(collect(args.work), args)
    write_all(collect(args.work), args)
    print(f"wrote {os.path.join(args.out, 'results.md')}")


if __name__ == "__main__":
    main()
