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


def test_one_command_trains_both_budgets_resumes_and_reports(tmp_path):
    out = tmp_path / "docs"
    cmd = [
        sys.executable, os.path.join(ROOT, "benchmarks", "paper_table.py"), "--only", "speakers/dualpath",
        "--variants", "CrossMamba-TSE", "Transformer-TSE", "--seeds", "1", "2", "--scale=0.5",
        "--minutes=0.02",  # equal minutes: a tiny budget (the exact epochs: the test above)
        "--lengths", "1", "--reps=1", "--stream-seconds=0.2",
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
    assert {r["decoder"] for r in results["speed"]["streaming"]} == {"crossmamba", "attention-1s"}
    # a fresh clone (no run folders, the committed results.json) keeps every recorded run and
    # the speed tables: it trains and times nothing and reports the same numbers
    cmd[cmd.index(f"--work={tmp_path / 'runs'}")] = f"--work={tmp_path / 'clone_runs'}"
    again = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "kept the runs recorded" in again.stdout
    assert "budget," not in again.stdout and "== speed ==" not in again.stdout
    assert json.load(open(out / "results.json"))["runs"] == results["runs"]


def test_pesq_and_stoi_rank_a_cleaner_estimate_higher():
    g = torch.Generator().manual_seed(3)
    t = torch.arange(16000) / 8000.0
    target = torch.sin(2 * math.pi * 220 * t) * (0.5 + 0.5 * torch.sin(2 * math.pi * 3 * t))
    mixture = target + 0.5 * torch.randn(16000, generator=g)
    clean = perceptual_metrics(target + 0.02 * torch.randn(16000, generator=g), target, mixture, 8000)
    noisy = perceptual_metrics(target + 0.2 * torch.randn(16000, generator=g), target, mixture, 8000)
    assert sorted(clean) == ["pesq", "pesqi", "stoi", "stoii"]
    assert clean["pesq"] > noisy["pesq"] and clean["stoi"] > noisy["stoi"] and clean["pesqi"] > 0
    itself = perceptual_metrics(mixture, target, mixture, 8000)
    assert itself["pesqi"] == 0.0 and itself["stoii"] == 0.0
    assert perceptual_metrics(target, target, mixture, 44100) == {}  # P.862 defines 8 and 16 kHz only
