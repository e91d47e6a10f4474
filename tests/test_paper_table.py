"""``benchmarks/paper_table.py``: a smoke run with a tiny budget, and the metrics it reports
checked against hand-computed values."""

import argparse
import doctest
import json
import math
import os
import subprocess
import sys

import torch

from speechbrain_crossmamba.evaluation import perceptual_metrics, si_snr, utterance_metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
import paper_report  # noqa: E402  (benchmarks/ is not a package)
import paper_table  # noqa: E402
from paper_report import quality_claims  # noqa: E402
from paper_table import mean_ci  # noqa: E402
from test_training import TINY_MODEL, TINY_SPEAKERS  # noqa: E402


def test_si_snr_of_a_scaled_copy_is_very_large():
    target = torch.randn(1, 8000, generator=torch.Generator().manual_seed(0))
    assert si_snr(0.3 * target, target).item() > 80.0


def test_si_snr_with_orthogonal_noise_matches_the_closed_form():
    g = torch.Generator().manual_seed(1)
    target, noise = torch.randn(8000, generator=g), torch.randn(8000, generator=g)
    target, noise = target - target.mean(), noise - noise.mean()
    noise = noise - (noise @ target) / (target @ target) * target  # orthogonal to the target
    noise = noise * 0.5 * target.norm() / noise.norm()  # -> ||t||^2 / ||n||^2 = 4
    expected = 10 * math.log10(4.0)
    assert abs(si_snr((target + noise)[None], target[None]).item() - expected) < 1e-3


def test_improvements_are_zero_for_the_mixture_itself():
    g = torch.Generator().manual_seed(2)
    target = torch.randn(8000, generator=g)
    mixture = target + torch.randn(8000, generator=g)
    metrics = utterance_metrics(mixture, target, mixture)
    assert abs(metrics["sdri"]) < 1e-6 and abs(metrics["si-snri"]) < 1e-6


def test_the_examples_of_the_table_scripts_run():
    """benchmarks/ is outside the doctest paths: its examples (the run queue, the log parser, the
    restore of a committed report and the refusal to delete a finished run) are run here."""
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    for module in (paper_table, paper_report):
        result = doctest.testmod(module, optionflags=flags)
        assert result.failed == 0 and result.attempted > 0, module.__name__


def _fake_recipe(pace):
    """Stands in for the recipe: epochs of ``pace`` minutes each, appended to the run's log and
    started only while the minutes are under the budget (the first epoch of a fresh run always);
    the test score is the steps trained, so every test pass is told apart."""

    def recipe(out, combo, variant, seed, args, epochs, minutes=None):
        log = os.path.join(out, "train_log.txt")
        done = paper_table.epoch_lines(log)[-1] if os.path.exists(log) else (0, 0, 0.0)
        epoch, _, elapsed = done
        with open(log, "a") as f:
            while epoch < epochs and (minutes is None or elapsed < minutes or epoch == 0):
                epoch, elapsed = epoch + 1, elapsed + pace
                f.write(f"epoch: {epoch}, lr: 1e-3, steps: {50 * epoch}, minutes: {elapsed:.2f} - x\n")
        with open(os.path.join(out, "test_results.csv"), "w") as f:
            f.write(f"ID,si-snri,sdri\nm1,{50 * epoch},0\navg,0,0\n")

    return recipe


def test_both_budgets_come_from_one_run_tested_where_each_ends(tmp_path, monkeypatch):
    """Equal minutes (events/streaming: 4.22 min) and equal steps (6 epochs) for a variant slower
    than the budget, one faster, and one whose equal steps use up the minutes."""
    args = argparse.Namespace(work=str(tmp_path), scale=1.0, train_args=[], minutes=None, fresh=False)
    combo = ("events", "streaming")
    found = {}
    for variant, pace in (("CrossMamba-TSE", 0.5), ("Attention-TSE", 1.0), ("Mamba-TSE", 0.75)):
        monkeypatch.setattr(paper_table, "_recipe", _fake_recipe(pace))
        steps, minutes = paper_table.run(combo, variant, 1, args)
        found[variant] = (steps["epochs"], minutes["epochs"], steps["si-snri"], minutes["si-snri"])
        assert steps["reference_minutes"] == minutes["reference_minutes"] == 4.22
    assert found["CrossMamba-TSE"] == (6, 9, 300, 450)  # steps at 3.0 min, then on: epochs 7-9 start < 4.22
    assert found["Attention-TSE"] == (6, 5, 300, 250)  # minutes first (epoch 5 starts at 4.0), then on
    assert found["Mamba-TSE"] == (6, 6, 300, 300)  # 6 epochs take 4.5 min: the same run, tested once
    # a second call trains nothing: the rows are kept in the run folder
    monkeypatch.setattr(paper_table, "_recipe", None)
    assert paper_table.run(combo, "Attention-TSE", 1, args)[1]["si-snri"] == 250


def test_mean_ci_by_hand():
    mean, half = mean_ci([1.0, 2.0, 3.0, 6.0])
    sd = math.sqrt(((1 - 3) ** 2 + (2 - 3) ** 2 + 0 + (6 - 3) ** 2) / 3)
    assert mean == 3.0 and abs(half - 1.96 * sd / 2) < 1e-12


def test_claims_are_judged_on_paired_seeds_and_never_on_a_crossmamba_that_did_not_learn():
    def row(variant, seed, value):
        return {"task": "speakers", "host": "dualpath", "variant": variant, "budget": "steps",
                "seed": seed, "si-snri": value}

    rows = [row("CrossMamba-TSE", s, 3.0 + d) for s, d in ((1, 0.0), (2, 0.5), (3, 1.0))]
    rows += [row("Transformer-TSE", s, 2.0 + d) for s, d in ((1, 0.0), (2, 0.5), (3, 1.0))]
    rows += [row("Mamba-TSE", s, 0.2) for s in (1, 2, 3)]
    rows += [dict(row("CrossMamba-TSE", s, 0.5), budget="minutes") for s in (1, 2, 3)]
    rows += [dict(row("Transformer-TSE", s, 2.0 + s), budget="minutes") for s in (1, 2, 3)]
    claims = {c[0]: c for c in quality_claims(rows)}
    vs_attention = claims["speakers, dualpath, equal steps: CrossMamba matches Transformer-TSE (>= -0.3 dB)"]
    assert vs_attention[1] == "+1.00 dB ± 0.00 (3 seeds)" and vs_attention[2] == "held"
    # a baseline that has not learned against a CrossMamba that has: judged, and said so
    vs_mamba = claims["speakers, dualpath, equal steps: CrossMamba beats Mamba-TSE by >= 1 dB"]
    assert vs_mamba[1].startswith("+3.30 dB ±") and vs_mamba[2].startswith("held at this budget (Mamba-TSE below 1 dB")
    # a CrossMamba that has not learned: never judged
    vs_attention = claims["speakers, dualpath, equal minutes: CrossMamba matches Transformer-TSE (>= -0.3 dB)"]
    assert vs_attention[2].startswith("not measurable at this budget: CrossMamba below 1 dB")


def _streaming_output(path):
    """A ``benchmarks/streaming.py`` output to cite (two decoders at the CPU size, one FSD row)."""
    rows = [{"size": size, "decoder": decoder, "chunk_ms": 8, "chunk_samples": 64, "seconds": 10.0,
             "p50_ms": p50, "p95_ms": p50 + 1, "max_ms": p50 + 5, "rtf": p50 / 8, "repeats": 3,
             "p50_ms_range": [p50 - 0.1, p50 + 0.1], "algorithmic_latency_ms": 9.0}
            for size, decoder, p50 in (("cpu", "crossmamba", 1.25), ("cpu", "attention-1s", 2.5),
                                       ("fsd", "crossmamba", 99.0))]
    growth = [{"size": "cpu", "decoder": d, "elapsed_s": t, "state_mb": mb}
              for d, mb in (("crossmamba", 0.05), ("attention-1s", 1.01)) for t in (0.0, 300.0)]
    stamp = {"command": "python benchmarks/streaming.py --out docs/streaming.json", "date": "2026-01-02",
             "device": "Cited CPU, 2 cores", "threads": 2}
    json.dump({"stamp": stamp, "seconds": 10.0, "repeats": 3, "latency": rows, "growth": growth},
              open(path, "w"))


def test_one_command_trains_both_budgets_resumes_and_reports(tmp_path):
    out = tmp_path / "docs"
    _streaming_output(tmp_path / "streaming.json")
    cmd = [
        sys.executable, os.path.join(ROOT, "benchmarks", "paper_table.py"), "--only", "speakers/dualpath",
        "--variants", "CrossMamba-TSE", "Transformer-TSE", "--seeds", "1", "2", "--scale=0.5",
        "--minutes=0.02",  # equal minutes: a tiny budget (the exact epochs: the test above)
        "--lengths", "1", "--reps=1", f"--streaming={tmp_path / 'streaming.json'}",
        f"--data={tmp_path / 'data'}", f"--work={tmp_path / 'runs'}", f"--out={out}",
        TINY_MODEL, *TINY_SPEAKERS, "--epoch_size=4", "--segment_seconds=1.0", "--enroll_seconds=1.0",
        "--batch_size=2", "--warm_start_epochs=1",
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert {"results.md", "results.json", "quality.png", "time.png", "memory.png"} <= set(os.listdir(out))
    results = json.load(open(out / "results.json"))
    runs = {(r["variant"], r["seed"], r["budget"]): r for r in results["runs"]}
    assert len(runs) == 8  # two variants, two seeds, two budgets
    for seed in (1, 2):
        steps = runs[("CrossMamba-TSE", seed, "steps")]
        assert steps["epochs"] == 2 and steps["n_test"] == 3 and math.isfinite(steps["si-snri"])
        assert runs[("Transformer-TSE", seed, "steps")]["epochs"] == 2  # equal steps
    for (variant, seed, budget), row in runs.items():  # every variant, CrossMamba too, has the budget
        assert row["reference_minutes"] == 0.02 and row["epochs"] >= 1 and math.isfinite(row["si-snri"])
    report = open(out / "results.md").read()
    assert "| speakers, dualpath, equal steps: CrossMamba matches Transformer-TSE (>= -0.3 dB) |" in report
    assert "(2 seeds)" in report and "not measurable here: this run had no GPU" in report
    hosts = {(c["host"], c["config"]) for c in results["speed"]["inference"] if c["status"] == "ok"}
    assert ("dualpath", "CrossMamba-TSE") in hosts and ("singlepath", "Transformer-TSE") in hosts
    # the speed cases time the trained recipe's model lines, and the report says so
    assert {c["overrides"] for c in results["speed"]["inference"]} == {paper_table._speaker_model_lines()}
    assert "These are the trained recipe's model lines" in report
    # the streaming latency is cited from the given benchmarks/streaming.py output, not timed again
    assert {r["decoder"] for r in results["streaming"]["latency"]} == {"crossmamba", "attention-1s"}
    assert "| crossmamba | 8 | 1.25 | 1.15-1.35 | 2.25 | 6.25 | 0.156 | 0.05 (after 5 min) |" in report
    assert "(p50 per chunk) | 2.00x | held |" in report  # its 8 ms p50s: attention 2.5 / CrossMamba 1.25
    # every run's rows keep the stamp of the machine that trained them
    assert all(r["machine"]["device"] and r["machine"]["cores"] for r in results["runs"])
    assert "machine" not in results and "device" not in results["table"]
    # a fresh clone (no run folders, the committed results.json) keeps every recorded run and
    # the speed tables: it trains and times nothing and reports the same numbers
    cmd[cmd.index(f"--work={tmp_path / 'runs'}")] = f"--work={tmp_path / 'clone_runs'}"
    again = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "kept the runs recorded" in again.stdout
    assert "budget," not in again.stdout and "== speed ==" not in again.stdout
    assert json.load(open(out / "results.json"))["runs"] == results["runs"]


def test_a_restored_report_keeps_each_rows_machine_and_computes_its_prose(tmp_path):
    """Rows restored on another machine keep the machine they were trained on: the report's
    machine lines, core counts and t-quantiles come from the rows, not from this machine."""
    rows = []
    for variant, machine, cores in (("CrossMamba-TSE", "Old CPU", 4), ("Transformer-TSE", "Older CPU", 4)):
        for seed in (1, 2):
            for budget in ("steps", "minutes"):
                rows.append({"task": "speakers", "host": "dualpath", "variant": variant, "seed": seed,
                             "budget": budget, "reference_minutes": 0.02, "epochs": 2, "steps": 2,
                             "minutes_trained": 0.01 * seed, "si-snri": 2.0 + seed, "si-snri_ci": 0.1,
                             "sdri": 1.0, "finished": "2020-01-0%d 10:00" % seed,
                             "machine": {"device": f"{machine}, {cores} cores", "cores": cores,
                                         "torch": "1.0", "command": "python benchmarks/paper_table.py"}})
    out = tmp_path / "docs"
    out.mkdir()
    table = {"command": "python benchmarks/paper_table.py", "seeds": [1, 2], "scale": 0.5,
             "train_args": [], "combos": ["speakers/dualpath"]}
    json.dump({"table": table, "runs": rows, "speed": {}}, open(out / "results.json", "w"))
    cmd = [sys.executable, os.path.join(ROOT, "benchmarks", "paper_table.py"), "--report", "--scale=0.5",
           "--minutes=0.02", f"--work={tmp_path / 'runs'}", f"--out={out}",
           f"--streaming={tmp_path / 'none.json'}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = open(out / "results.md").read()
    assert "- A: Old CPU, 4 cores; torch 1.0; 2 runs, 2020-01-01, 2020-01-02." in report
    assert "- B: Older CPU, 4 cores" in report and "Machine:" not in report
    assert "training and validation, 4 CPU cores" in report
    assert "with 2 seeds the t-quantile is 12.71" in report and "4.30" not in report
    assert "Not measured: run `python benchmarks/streaming.py --out docs/streaming.json`" in report
    again = json.load(open(out / "results.json"))
    machines = lambda rs: sorted(json.dumps(r["machine"], sort_keys=True) for r in rs)  # noqa: E731
    assert machines(again["runs"]) == machines(rows)
