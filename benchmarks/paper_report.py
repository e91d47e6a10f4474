"""``docs/results.md`` of ``benchmarks/paper_table.py``: aggregates over seeds, the claims, plots.

Every number comes from the finished runs' ``steps.json`` / ``minutes.json`` (each with the stamp
of the machine that trained it), the speed cases of one ``paper_table.py --speed-only`` command
and the streaming latency of ``docs/streaming.json`` (``benchmarks/streaming.py``); nothing here
trains or times, and the prose's machines, core counts, t-quantiles and ratios are computed from
those rows.
"""

import json
import math
import os
import re
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


def speed_claims(speed, streaming=None):
    """Claim 3 rows: the GPU claim (not measurable without a GPU) and the CPU measurements
    (inference: ``speed``'s cases; streaming: ``streaming``, a ``benchmarks/streaming.py`` output)."""
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
    lat = {(r["decoder"], r["chunk_ms"]): r["p50_ms"] for r in (streaming or {}).get("latency", [])
           if r.get("size", "cpu") == "cpu"}
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


def quality_lines(agg, keys=None):
    """The quality table, grouped by budget; ``keys``: :func:`machine_keys` (the machines column)."""
    keys = keys or {}
    lines = []
    for budget in ("steps", "minutes"):
        lines += ["", f"### Equal {budget}", "",
                  "| task | host | variant | seeds | SI-SNRi (dB), mean (sd over seeds) | ± 95 % CI of one "
                  "run's mean over mixtures | SDRi (dB) | PESQ (Δ) | STOI (Δ) | SI-SNRi, interferer's clue "
                  "| steps trained | train min | trained on |",
                  "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
        for e in (e for e in agg if e["budget"] == budget):
            lines.append(f"| {e['task']} | {e['host']} | {e['variant']} | {len(e['seeds'])} | {_fmt(e, 'si-snri')} "
                         f"| {e['si-snri_ci']:.2f} | {_fmt(e, 'sdri')} | {_delta(e, 'pesq', 2)} | {_delta(e, 'stoi', 3)} "
                         f"| {_fmt(e, 'si-snri-interferer-clue')} | {e['steps']:.0f} | {e['minutes_trained']:.1f} "
                         f"| {', '.join(sorted({keys.get((r.get('machine') or {}).get('device', 'not recorded'), '?') for r in e['runs']}))} |")
    return lines


def cores_of(machine):
    """The core count of a machine stamp (its ``cores``, else the ``N cores`` of its ``device``).

    Example
    -------
    >>> cores_of({"device": "AMD EPYC, 2 cores"}), cores_of({"cores": 16}), cores_of({})
    (2, 16, None)
    """
    if machine.get("cores"):
        return machine["cores"]
    found = re.search(r"(\d+) cores", machine.get("device", ""))
    return int(found[1]) if found else None


def machine_keys(rows):
    """``{device: letter}`` of the rows' own stamps, the most frequent machine first."""
    counts = {}
    for r in rows:
        device = (r.get("machine") or {}).get("device", "not recorded")
        counts[device] = counts.get(device, 0) + 1
    return {d: chr(ord("A") + i) for i, d in enumerate(sorted(counts, key=lambda d: (-counts[d], d)))}


def machine_lines(rows):
    """One line per machine the runs were trained on: its runs (steps rows), torch and dates."""
    keys, lines = machine_keys(rows), []
    for device, key in keys.items():
        mine = [r for r in rows if (r.get("machine") or {}).get("device", "not recorded") == device]
        runs = sum(r["budget"] == "steps" for r in mine)
        dates = sorted({(r.get("finished") or (r.get("machine") or {}).get("date") or "?")[:10] for r in mine})
        torches = sorted({(r.get("machine") or {}).get("torch", "?") for r in mine})
        backfilled = sum(1 for r in mine if (r.get("machine") or {}).get("source"))
        lines.append(f"- {key}: {device}; torch {', '.join(torches)}; {runs} runs, {', '.join(dates)}"
                     + (f" ({backfilled} rows' stamps recovered from the git history of `docs/results.json`: "
                        "each row's `machine.source`)" if backfilled else "") + ".")
    return lines


def t_quantile_text(rows):
    """The 95 % t-quantiles of the seed counts that the quality claims pair, e.g. ``with 3 seeds
    the t-quantile is 4.30``, and what one seed gives.

    Example
    -------
    >>> rows = [{"task": "t", "host": "h", "variant": v, "budget": "steps", "seed": s}
    ...         for v in ("CrossMamba-TSE", "Mamba-TSE") for s in (1, 2, 3)]
    >>> t_quantile_text(rows)
    'with 3 seeds the t-quantile is 4.30, so only clear differences are decided'
    >>> t_quantile_text(rows[:1] + rows[3:4])
    'one seed gives no interval: its claims stay undecided'
    """
    seeds = {}
    for r in rows:
        seeds.setdefault((r["task"], r["host"], r["budget"], r["variant"]), set()).add(r["seed"])
    counts = set()
    for (task, host, budget, variant), mine in seeds.items():
        if variant == "CrossMamba-TSE":
            for (t, h, b, v), other in seeds.items():
                if (t, h, b) == (task, host, budget) and v != variant and mine & other:
                    counts.add(len(mine & other))
    quantiles = [f"with {n} seeds the t-quantile is {student_t.ppf(0.975, n - 1):.2f}" for n in sorted(counts) if n > 1]
    parts = [", ".join(quantiles) + ", so only clear differences are decided"] if quantiles else []
    if 1 in counts:
        parts.append("one seed gives no interval: its claims stay undecided")
    return "; ".join(parts)


def model_note(cases, trained, defaults=None):
    """What the speed rows timed against the trained recipe's model lines (``trained``, from
    ``paper_table._speaker_model_lines``): the lines the cases set, and the trained lines whose
    value differs from the cases' (their override, else the model YAML's ``defaults``).

    Example
    -------
    >>> cases = [{"overrides": "kernel_size: 128\\nK: 50"}]
    >>> note = model_note(cases, "kernel_size: 128\\nK: 50\\nnum_spks: 2", {"num_spks": 1})
    >>> note[note.index("The trained"):]  # doctest: +NORMALIZE_WHITESPACE
    "The trained recipe's model (`hparams/crossmamba_tse.yaml`) has `num_spks: 2` where these rows
    have `num_spks: 1` (the model YAML's), so they time a model of the recipe's frames and widths,
    not the trained model itself (`python benchmarks/paper_table.py --speed-only` times the trained lines)."
    """
    defaults = defaults or {}
    timed = sorted({c.get("overrides", "") for c in cases})
    if not timed:
        return ""
    lines = dict(line.split(": ", 1) for line in timed[0].splitlines() if ": " in line)
    text = ("Model: `hparams/models/tse.yaml` with " + ", ".join(f"`{k}: {v}`" for k, v in lines.items())
            + (" (rows of other configurations: " + "; ".join(timed[1:]) + ")" if len(timed) > 1 else "")
            + ", the host and variant of each row, the enrollment clue.")
    if trained:
        want = dict(line.split(": ", 1) for line in trained.splitlines() if ": " in line)
        timed_as = {k: lines.get(k, str(defaults.get(k, "?"))) for k in want}
        missing = {k: v for k, v in want.items() if timed_as[k] != v}
        if missing:
            text += (" The trained recipe's model (`hparams/crossmamba_tse.yaml`) has "
                     + ", ".join(f"`{k}: {v}`" for k, v in missing.items()) + " where these rows have "
                     + ", ".join(f"`{k}: {timed_as[k]}`" for k in missing)
                     + " (the model YAML's), so they time a model of the recipe's frames and widths, not the"
                     " trained model itself (`python benchmarks/paper_table.py --speed-only` times the trained lines).")
        else:
            text += " These are the trained recipe's model lines (`hparams/crossmamba_tse.yaml`)."
    return text


def speed_lines(speed, trained=None, defaults=None):
    """The inference table."""
    cases = [c for c in speed.get("inference", [])]
    timed = speed.get("stamp", {})
    reps = sorted({c.get("reps") for c in cases if c.get("reps")})
    threads = sorted({c.get("threads") for c in cases if c.get("threads")})
    backends = sorted({c.get("backend", "auto") for c in cases})
    lines = ["", f"## Inference speed and memory (speaker models, batch 1, `{'`, `'.join(backends)}` backend, "
             f"min of {'/'.join(map(str, reps))} timed forwards after a warm-up, {'/'.join(map(str, threads))} "
             "threads, each case in a fresh process)", "",
             f"Timed by `{timed.get('command', '?')}` on {timed.get('date', '?')}, {timed.get('device', '?')}.",
             "", model_note(cases, trained, defaults), "",
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
    return lines


def cited_streaming(streaming, source):
    """The part of a ``benchmarks/streaming.py`` output the report cites: its stamp and the CPU
    size's latency rows, each with the state size after the longest stream of its growth table."""
    if not streaming.get("latency"):
        return {}
    growth = {}
    for g in streaming.get("growth", []):
        if g["size"] == "cpu" and g["elapsed_s"] >= growth.get(g["decoder"], {}).get("elapsed_s", -1):
            growth[g["decoder"]] = g
    rows = [dict(r, state_mb=growth.get(r["decoder"], {}).get("state_mb"),
                 state_after_s=growth.get(r["decoder"], {}).get("elapsed_s"))
            for r in streaming["latency"] if r["size"] == "cpu"]
    return {"source": source, "stamp": streaming.get("stamp", {}), "seconds": streaming.get("seconds"),
            "repeats": streaming.get("repeats"), "latency": rows}


def streaming_lines(cited):
    """The streaming latency table, cited from ``docs/streaming.json``."""
    lines = ["", "## Streaming per-chunk latency (the streaming host at the SynthEvents size)", ""]
    if not cited:
        return lines + ["Not measured: run `python benchmarks/streaming.py --out docs/streaming.json`."]
    stamp = cited["stamp"]
    lines += [f"Cited from `{cited['source']}`: `{stamp.get('command', '?')}` on {stamp.get('date', '?')}, "
              f"{stamp.get('device', '?')}, {stamp.get('threads', '?')} threads; {cited['seconds']:g} s streams, "
              f"{cited['repeats']} per row after an untimed warm-up; p50, p95 and max over the chunks of "
              "every stream, and the range of the streams' own p50s. The same figures are in "
              "`docs/streaming.md` and the README.", "",
              "| decoder | chunk (ms) | p50 (ms) | p50 range over streams | p95 (ms) | max (ms) | real-time factor "
              "| state (MB) |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in cited["latency"]:
        low, high = r.get("p50_ms_range", (float("nan"), float("nan")))
        state = "" if r.get("state_mb") is None else f"{r['state_mb']:.2f} (after {r['state_after_s'] / 60:g} min)"
        lines.append(f"| {r['decoder']} | {r['chunk_ms']} | {r['p50_ms']:.2f} | {low:.2f}-{high:.2f} | "
                     f"{r['p95_ms']:.2f} | {r['max_ms']:.2f} | {r['rtf']:.3f} | {state} |")
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


def budget_lines(rows):
    """The budgets table: each combination's equal steps and equal minutes, and the budget against
    the minutes CrossMamba's equal-steps runs took (mean over its seeds)."""
    lines = ["| task | host | equal steps | equal minutes | CrossMamba's equal-steps minutes (mean) "
             "| equal minutes / that |", "|---|---|---:|---:|---:|---:|"]
    for task, host in sorted({(r["task"], r["host"]) for r in rows}):
        ref = next((r for r in rows if (r["task"], r["host"], r["budget"]) == (task, host, "steps")), None)
        cm = [r["minutes_trained"] for r in rows if (r["task"], r["host"], r["variant"], r["budget"])
              == (task, host, "CrossMamba-TSE", "steps")]
        if ref:
            mean = statistics.fmean(cm) if cm else float("nan")
            lines.append(f"| {task} | {host} | {ref['steps']} steps ({ref['epochs']} epochs) "
                         f"| {ref['reference_minutes']:.2f} min | {mean:.2f} min ({len(cm)} seed{'s' if len(cm) != 1 else ''}) "
                         f"| {ref['reference_minutes'] / mean:.2f}x |")
    return lines


def write_all(rows, args):
    """Writes ``results.md``, ``results.json`` and the plots into ``args.out``."""
    os.makedirs(args.out, exist_ok=True)
    table = load_json(os.path.join(args.work, "stamp.json"))
    speed = load_json(os.path.join(args.work, "speed.json"))
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    source = getattr(args, "streaming", None) or os.path.join(root, "docs", "streaming.json")
    shown = os.path.relpath(os.path.abspath(source), root)
    streaming = cited_streaming(load_json(source), shown)
    agg = aggregate(rows)
    claims = quality_claims(rows) + speed_claims(speed, streaming)
    plot(agg, speed, args.out)
    keys = machine_keys(rows)
    cores = sorted({c for c in (cores_of(r.get("machine") or {}) for r in rows) if c})
    cores_text = ("/".join(map(str, cores)) + " CPU cores") if cores else "cores not recorded"
    lines = ["# The paper's comparison, measured here", "",
             f"Command: `{table.get('command', '?')}` (the table's configuration; each run's own command, "
             "machine and date are in its rows in `results.json`).  ",
             f"Seeds {table.get('seeds')}; combinations {table.get('combos')}; "
             f"{sum(r['budget'] == 'steps' for r in rows)} runs finished.", "",
             "Trained on (each run's own stamp; the column *trained on* of the quality tables):", ""]
    lines += machine_lines(rows)
    lines += ["", "## The paper's claims", "",
              "Quality claims: paired by seed (same seed, same data order); the ± is the 95 % t-interval of "
              "the mean difference over seeds. *held* / *not held*: the whole interval is on one side of the "
              "threshold; *undecided*: it spans it (" + (t_quantile_text(rows) or "no paired seeds yet")
              + "). No correction for the number of claims. "
              "SynthSpeakers is eSpeak NG speech: its PESQ (P.862 narrow-band) and STOI are indicative, not "
              "comparable with real-speech figures.", "",
              "| claim | measured | verdict |", "|---|---:|---|"]
    lines += [f"| {claim} | {value} | {held} |" for claim, value, held in claims]
    lines += ["", "## Budgets", "",
              "Equal steps: every variant of a combination trains the same epochs. Equal minutes: no epoch "
              "is started after the combination's budget (the recipe's `max_train_minutes` rule, so the "
              "last epoch may end past it), CrossMamba included. Both come from one run per variant, "
              "tested where each budget ends: a variant slower than the budget reaches its minutes first, "
              "a faster one its steps. Minutes are the recipe's train-log minutes (training and "
              f"validation, {cores_text}). Where the budget is above CrossMamba's own equal-steps minutes "
              "(last column over 1x), CrossMamba trains on past its equal steps in it too.", ""]
    lines += budget_lines(rows)
    older = [r for r in rows if "finished" not in r]
    if older:
        names = sorted({(r["task"], r["host"], r["variant"], r["seed"]) for r in older})
        theirs = sorted({keys.get((r.get("machine") or {}).get("device", "not recorded")) for r in older})
        others = sorted({keys.get((r.get("machine") or {}).get("device", "not recorded"))
                         for r in rows if "finished" in r})
        lines += ["", "Runs that record no finish time (trained before rows had one): "
                  + "; ".join(f"{t}/{h} {v} seed {s}" for t, h, v, s in names)
                  + f". Trained on {', '.join(theirs)}"
                  + (f", the other runs on {', '.join(others)}: their minutes are another machine's, so their "
                     "equal-minutes rows are not at the others' pace." if set(theirs) != set(others) else ".")]
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
                  f"{', '.join(ratios)} CrossMamba's here (equal-steps runs, mean minutes per epoch). Its "
                  "equal-minutes rows reflect this implementation, not attention's best case. Its streaming "
                  "inference (below) uses the key/value cache."]
    lines += ["", "## Quality (test sets; SI-SNRi and SDRi improvements over the mixture)"]
    lines += quality_lines(agg, keys)
    lines += speed_lines(speed, getattr(args, "trained_model", None), getattr(args, "model_defaults", None))
    lines += streaming_lines(streaming)
    lines += ["", "![quality](quality.png) ![time](time.png) ![memory](memory.png)", ""]
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write("\n".join(lines))
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"table": table, "runs": rows, "claims": claims, "speed": speed, "streaming": streaming},
                  f, indent=1)


def load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except OSError:
        return {}
