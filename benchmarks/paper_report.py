"""``docs/results.md`` of ``benchmarks/paper_table.py``: aggregates over seeds, the claims, plots.

Every number comes from the finished runs' ``steps.json`` / ``minutes.json`` and the speed cases
of one ``paper_table.py`` command; nothing here trains or times.
"""

import json
import math
import os
import statistics

from scipy.stats import t as student_t

BASELINES = {"dualpath": "Transformer-TSE", "streaming": "Attention-TSE"}
LEARNED_DB = 1.0  # below this test SI-SNRi a model has not learned the task: its claims are moot


def aggregate(rows):
    """One entry per (task, host, variant, budget): means over seeds and their spread.

    Example
    -------
    >>> rows = [{"task": "t", "host": "h", "variant": "v", "budget": "steps", "seed": s,
    ...          "si-snri": x, "si-snri_ci": 0.3, "sdri": x, "steps": 10, "minutes_trained": 1.0}
    ...         for s, x in ((1, 2.0), (2, 4.0))]
    >>> a = aggregate(rows)[0]
    >>> a["si-snri"], round(a["si-snri_sd"], 3), a["seeds"], a["si-snri_ci"]
    (3.0, 1.414, [1, 2], 0.3)
    """
    groups = {}
    for r in rows:
        groups.setdefault((r["task"], r["host"], r["variant"], r["budget"]), []).append(r)
    out = []
    for (task, host, variant, budget), rs in groups.items():
        rs = sorted(rs, key=lambda r: r["seed"])
        entry = {"task": task, "host": host, "variant": variant, "budget": budget,
                 "seeds": [r["seed"] for r in rs], "runs": rs}
        for key in ("si-snri", "sdri", "si-snri-interferer-clue", "pesq", "pesqi", "stoi", "stoii",
                    "steps", "minutes_trained"):
            values = [r[key] for r in rs if key in r]
            if values:
                entry[key] = statistics.fmean(values)
                entry[key + "_sd"] = statistics.stdev(values) if len(values) > 1 else float("nan")
        entry["si-snri_ci"] = statistics.fmean(r["si-snri_ci"] for r in rs)
        out.append(entry)
    return out


def verdict(diffs, threshold):
    """(mean difference, half-width of its 95 % t-interval over seeds, verdict) for the claim
    ``difference >= threshold``, from paired per-seed differences.

    Example
    -------
    >>> verdict([0.5, 0.6, 0.7], 0.0)[2], verdict([-1.0, 1.0, 0.2], 0.0)[2], verdict([-2.0], 0.0)[2]
    ('held', 'undecided', 'undecided (one seed; its point estimate is below the threshold)')
    """
    mean = statistics.fmean(diffs)
    if len(diffs) < 2:
        side = "above" if mean >= threshold else "below"
        return mean, float("nan"), f"undecided (one seed; its point estimate is {side} the threshold)"
    half = student_t.ppf(0.975, len(diffs) - 1) * statistics.stdev(diffs) / math.sqrt(len(diffs))
    if mean - half >= threshold:
        return mean, half, "held"
    if mean + half < threshold:
        return mean, half, "not held"
    return mean, half, "undecided"


def quality_claims(rows):
    """Claims 1 and 2 per task, host and budget: CrossMamba against the attention baseline
    (within 0.3 dB) and against plain Mamba (by >= 1 dB), on paired seeds."""
    by = {(r["task"], r["host"], r["variant"], r["budget"], r["seed"]): r["si-snri"] for r in rows}
    claims = []
    for task, host, budget in sorted({(r["task"], r["host"], r["budget"]) for r in rows}):
        for other, threshold, name in ((BASELINES[host], -0.3, "matches {} (>= -0.3 dB)"),
                                       ("Mamba-TSE", 1.0, "beats {} by >= 1 dB")):
            claim = f"{task}, {host}, equal {budget}: CrossMamba {name.format(other)}"
            if host == "streaming" and other == "Mamba-TSE":
                claims.append((claim, "", "not measurable here: the streaming host's comparison "
                               "is CrossMamba against windowed attention (no plain-Mamba decoder)"))
                continue
            seeds = sorted(s for (t, h, v, b, s) in by if (t, h, v, b) == (task, host, "CrossMamba-TSE", budget)
                           and (task, host, other, budget, s) in by)
            if not seeds:
                claims.append((claim, "", "not run yet"))
                continue
            cm = [by[(task, host, "CrossMamba-TSE", budget, s)] for s in seeds]
            ot = [by[(task, host, other, budget, s)] for s in seeds]
            mean, half, held = verdict([a - b for a, b in zip(cm, ot)], threshold)
            measured = (f"{mean:+.2f} dB" + ("" if math.isnan(half) else f" ± {half:.2f}")
                        + f" ({len(seeds)} seed{'s' if len(seeds) > 1 else ''})")
            weak = [n for n, v in (("CrossMamba", cm), (other, ot)) if statistics.fmean(v) < LEARNED_DB]
            if "CrossMamba" in weak:  # differences between models that learned nothing mean nothing
                held = (f"not measurable at this budget: {' and '.join(weak)} below {LEARNED_DB:g} dB "
                        f"(has not learned the task); as measured: {held}")
            elif weak:  # CrossMamba learned and the baseline has not, by this budget: a measured gap
                held += f" at this budget ({other} below {LEARNED_DB:g} dB: has not learned the task by then)"
            claims.append((claim, measured, held))
    return claims


def speed_claims(speed):
    """Claim 3 rows: the GPU claim (not measurable without a GPU) and the CPU measurements."""
    claims = [("CrossMamba > 40 % faster than the Transformer at inference on GPU with mamba-ssm "
               "(the paper's setting)", "", "not measurable here: this run had no GPU (mamba-ssm's "
               "kernels need CUDA); the rows below are CPU wall-clock, a different setting")]
    cases = {(c["host"], c["config"], c["seconds"]): c.get("ms") for c in speed.get("inference", [])
             if c.get("status") == "ok"}
    for host in ("dualpath", "singlepath"):
        for seconds in (8.0, 32.0):
            cm, tr = cases.get((host, "CrossMamba-TSE", seconds)), cases.get((host, "Transformer-TSE", seconds))
            if cm and tr:
                claims.append((f"CPU (`cpu` scan kernels), {host}, {seconds:g} s: CrossMamba >= 1.4x the "
                               "Transformer's speed", f"{tr / cm:.2f}x", "held" if tr / cm >= 1.4 else "not held"))
    lat = {(r["decoder"], r["chunk_ms"]): r["p50_ms"] for r in speed.get("streaming", [])}
    if ("crossmamba", 8) in lat and ("attention-1s", 8) in lat:
        ratio = lat[("attention-1s", 8)] / lat[("crossmamba", 8)]
        claims.append(("CPU, streaming host, 8 ms chunks: CrossMamba decoder >= 1.4x the windowed "
                       "attention's speed (p50 per chunk)", f"{ratio:.2f}x", "held" if ratio >= 1.4 else "not held"))
    return claims


def _fmt(entry, key, digits=2):
    if key not in entry:
        return ""
    sd = entry.get(key + "_sd", float("nan"))
    return f"{entry[key]:.{digits}f}" + ("" if math.isnan(sd) else f" (sd {sd:.{digits}f})")


def _delta(entry, key, digits):
    """``absolute (improvement)``, means over seeds, e.g. PESQ and PESQ over the mixture's."""
    if key not in entry:
        return ""
    return f"{entry[key]:.{digits}f} ({entry[key + 'i']:+.{digits}f})"


def quality_lines(agg):
    """The quality table, grouped by budget."""
    lines = []
    for budget in ("steps", "minutes"):
        lines += ["", f"### Equal {budget}", "",
                  "| task | host | variant | seeds | SI-SNRi (dB), mean (sd over seeds) | ± 95 % CI of one "
                  "run's mean over mixtures | SDRi (dB) | PESQ (Δ) | STOI (Δ) | SI-SNRi, interferer's clue "
                  "| steps trained | train min |",
                  "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for e in (e for e in agg if e["budget"] == budget):
            lines.append(f"| {e['task']} | {e['host']} | {e['variant']} | {len(e['seeds'])} | {_fmt(e, 'si-snri')} "
                         f"| {e['si-snri_ci']:.2f} | {_fmt(e, 'sdri')} | {_delta(e, 'pesq', 2)} | {_delta(e, 'stoi', 3)} "
                         f"| {_fmt(e, 'si-snri-interferer-clue')} | {e['steps']:.0f} | {e['minutes_trained']:.1f} |")
    return lines


def speed_lines(speed):
    """The inference and streaming tables."""
    cases = [c for c in speed.get("inference", [])]
    timed = speed.get("stamp", {})
    lines = ["", "## Inference speed and memory (speaker models at the recipe's size, batch 1, `cpu` "
             "backend, min of the timed forwards, each case in a fresh process)", "",
             f"Timed by `{timed.get('command', 'the command above')}` on {timed.get('date', 'the date above')}.", "",
             "Ratio: the Transformer's time / this model's, same host and length (> 1: faster).", "",
             "| host | variant | audio (s) | time (ms) | real-time factor | peak memory (MB) | vs Transformer |",
             "|---|---|---:|---:|---:|---:|---:|"]
    base = {(c["host"], c["seconds"]): c.get("ms") for c in cases if c["config"] == "Transformer-TSE"}
    for c in cases:
        if c.get("status") != "ok":
            lines.append(f"| {c['host']} | {c['config']} | {c['seconds']:g} | {c['status']} | | | |")
            continue
        ratio = base.get((c["host"], c["seconds"]))
        lines.append(f"| {c['host']} | {c['config']} | {c['seconds']:g} | {c['ms']:.1f} | "
                     f"{c['ms'] / 1e3 / c['seconds']:.3f} | {c['extra_mb']:.0f} | "
                     f"{(ratio / c['ms']) if ratio else float('nan'):.2f}x |")
    lines += ["", "## Streaming per-chunk latency (the streaming host at the SynthEvents size)", "",
              "| decoder | chunk (ms) | p50 (ms) | p95 (ms) | max (ms) | real-time factor | state (MB) |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for r in speed.get("streaming", []):
        lines.append(f"| {r['decoder']} | {r['chunk_ms']} | {r['p50_ms']:.2f} | {r['p95_ms']:.2f} | "
                     f"{r['max_ms']:.2f} | {r['rtf']:.3f} | {r.get('state_mb', float('nan')):.2f} |")
    return lines


def plot(agg, speed, folder):
    """quality.png (SI-SNRi per variant, sd over seeds), time.png and memory.png (log-log)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    combos = sorted({(e["task"], e["host"]) for e in agg})
    if combos:
        fig, axes = plt.subplots(1, len(combos), figsize=(4.2 * len(combos), 3.6), squeeze=False)
        for ax, (task, host) in zip(axes[0], combos):
            for k, budget in enumerate(("steps", "minutes")):
                es = [e for e in agg if (e["task"], e["host"], e["budget"]) == (task, host, budget)]
                xs = [i + 0.38 * k for i in range(len(es))]
                ax.bar(xs, [e["si-snri"] for e in es], width=0.38, label=f"equal {budget}",
                       yerr=[0 if math.isnan(e.get("si-snri_sd", math.nan)) else e["si-snri_sd"] for e in es])
                ax.set_xticks([i + 0.19 for i in range(len(es))], [e["variant"] for e in es], rotation=30, fontsize=7)
            ax.set_title(f"{task}, {host}: SI-SNRi (dB)", fontsize=9)
            ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(os.path.join(folder, "quality.png"), dpi=110)
    cases = [c for c in speed.get("inference", []) if c.get("status") == "ok"]
    for key, name, label in (("ms", "time.png", "time (ms)"), ("extra_mb", "memory.png", "peak memory (MB)")):
        if not cases:
            break
        fig, ax = plt.subplots(figsize=(5.5, 4))
        for host, variant in dict.fromkeys((c["host"], c["config"]) for c in cases):
            pts = [(c["seconds"], max(c[key], 1e-3)) for c in cases if (c["host"], c["config"]) == (host, variant)]
            ax.loglog(*zip(*pts), marker="o", linestyle="-" if host == "dualpath" else "--",
                      label=f"{variant}, {host}")
        ax.set_xlabel("audio (s)")
        ax.set_ylabel(label)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(os.path.join(folder, name), dpi=110)
    plt.close("all")


def write_all(rows, args):
    """Writes ``results.md``, ``results.json`` and the plots into ``args.out``."""
    os.makedirs(args.out, exist_ok=True)
    stamp = load_json(os.path.join(args.work, "stamp.json"))
    speed = load_json(os.path.join(args.work, "speed.json"))
    agg = aggregate(rows)
    claims = quality_claims(rows) + speed_claims(speed)
    plot(agg, speed, args.out)
    lines = ["# The paper's comparison, measured here", "",
             f"Command: `{stamp.get('command', '?')}`  ",
             f"Machine: {stamp.get('device', '?')}; torch {stamp.get('torch', '?')}; {stamp.get('date', '?')}.  ",
             f"Seeds {stamp.get('seeds')}; combinations {stamp.get('combos')}; "
             f"{sum(r['budget'] == 'steps' for r in rows)} runs finished.",
             "", "## The paper's claims", "",
             "Quality claims: paired by seed (same seed, same data order); the ± is the 95 % t-interval of "
             "the mean difference over seeds. *held* / *not held*: the whole interval is on one side of the "
             "threshold; *undecided*: it spans it (with three seeds the t-quantile is 4.30, so only clear "
             "differences are decided). No correction for the number of claims. SynthSpeakers is eSpeak NG "
             "speech: its PESQ (P.862 narrow-band) and STOI are indicative, not comparable with real-speech "
             "figures.", "",
             "| claim | measured | verdict |", "|---|---:|---|"]
    lines += [f"| {claim} | {value} | {held} |" for claim, value, held in claims]
    lines += ["", "## Budgets", "",
              "Equal steps: every variant of a combination trains the same epochs. Equal minutes: no epoch "
              "is started after the combination's budget (the recipe's `max_train_minutes` rule, so the "
              "last epoch may end past it), CrossMamba included. Both come from one run per variant, "
              "tested where each budget ends: a variant slower than the budget reaches its minutes first, "
              "a faster one its steps. Minutes are the recipe's train-log minutes (training and "
              "validation, 2 CPU cores)."
              + ("" if getattr(args, "minutes", None) is not None or getattr(args, "scale", 1.0) != 1.0 else
                 " The budgets (`MINUTES` in `benchmarks/paper_table.py`) are the minutes CrossMamba's "
                 "first-seed run took when the table was first run; three of them were measured before the "
                 "denormal fix of the `cpu` kernels, when CrossMamba was about 1.8x slower, so CrossMamba now "
                 "trains past its equal steps in them too."), "",
              "| task | host | equal steps | equal minutes |", "|---|---|---:|---:|"]
    for task, host in sorted({(r["task"], r["host"]) for r in rows}):
        ref = next((r for r in rows if (r["task"], r["host"], r["budget"]) == (task, host, "steps")), None)
        if ref:
            lines.append(f"| {task} | {host} | {ref['steps']} steps ({ref['epochs']} epochs) "
                         f"| {ref['reference_minutes']:.2f} min |")
    older = sorted({(r["task"], r["host"], r["variant"], r["seed"]) for r in rows if "finished" not in r})
    if older:
        lines += ["", "Runs from the table's first session (before the `cpu` kernels' denormal fix; they "
                  "record no finish time): the machine's pace differed then (see docs/training.md), so their "
                  "equal-minutes rows are not at the others' pace; their steps are in the tables: "
                  + "; ".join(f"{t}/{h} {v} seed {s}" for t, h, v, s in older) + "."]
    pace = {}  # minutes per epoch of the equal-steps runs, by task and variant, on the streaming host
    for r in rows:
        if r["host"] == "streaming" and r["budget"] == "steps":
            pace.setdefault((r["task"], r["variant"]), []).append(r["minutes_trained"] / r["epochs"])
    ratios = [f"{task} {statistics.fmean(pace[(task, 'Attention-TSE')]) / statistics.fmean(v):.1f}x"
              for (task, variant), v in sorted(pace.items())
              if variant == "CrossMamba-TSE" and (task, "Attention-TSE") in pace]
    if ratios:
        lines += ["", "Caveat on the streaming host's equal minutes: the windowed cross-attention trains as a "
                  "masked full attention over the whole segment (`nnet/causal_decoder.py`: O(L²) in the frames, "
                  "where a banded kernel would be O(L · window)); an epoch of it costs "
                  f"{', '.join(ratios)} CrossMamba's here. Its equal-minutes rows reflect this implementation, "
                  "not attention's best case. Its streaming inference (below) uses the key/value cache."]
    lines += ["", "## Quality (test sets; SI-SNRi and SDRi improvements over the mixture)"]
    lines += quality_lines(agg)
    lines += speed_lines(speed)
    lines += ["", "![quality](quality.png) ![time](time.png) ![memory](memory.png)", ""]
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write("\n".join(lines))
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"machine": stamp, "runs": rows, "claims": claims, "speed": speed}, f, indent=1)


def load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except OSError:
        return {}
