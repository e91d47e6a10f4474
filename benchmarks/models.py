"""Parameter counts of the target extraction models, and CrossMamba-TSE against Transformer-TSE.

Prints markdown tables and writes a JSON file. Every figure is measured in this run; speed-ups
are ratios of times measured in the same run, since machines are noisy.

Part 1 (parameters): for both sizes (``cpu``: ``hparams/models/tse.yaml``, ``paper``:
``tse_paper.yaml``), both hosts and the five configurations (CrossMamba-, Transformer-, Mamba-,
concat- and FiLM-TSE): total parameters and the share of the fusion modules (parameters whose
name contains ``fusions``). Built in this process; no forward pass.

Part 2 (time): the whole model at inference (``eval()``, ``torch.inference_mode()``, batch 1,
a random mixture and a 2 s random enrollment, or a class label) on 2, 8 and 32 s of audio at
8 kHz, CrossMamba-TSE against its Transformer twin at equal width, for each host. Each case runs
in a fresh process (peak RSS per case; a crash or an out-of-memory kill loses only that case)
under a wall-clock limit. Time is the minimum over ``--reps`` forwards after one warm-up; the
ratio is Transformer time / CrossMamba time (> 1: CrossMamba is faster). The issue's targets for
the single-path host (1.4x at 8 s, 3x at 32 s) are shown next to its ratios, as information.
The Transformer twin's attention runs PyTorch's ``scaled_dot_product_attention`` (see
``nnet/transformer.py``; PyTorch's own encoder layer builds the L x L matrix at inference on CPU).

Part 3 (``--train``): one training step (forward, an MSE loss, backward, an Adam step) of both
twins at batch ``--batch`` x ``--seconds`` (default 4 x 2 s) at CPU size, min over ``--reps``.

``--backend`` sets the scan and causal-conv backend of every Mamba layer (``cpu``: the fused C++
kernels, ``torch``: pure PyTorch; default ``auto``); ``--backends cpu torch`` times each, so
before/after ratios come from one run.

Usage::

    python benchmarks/models.py --size cpu --seconds 8 --backends cpu torch   # 8 s inference
    python benchmarks/models.py --train --size cpu --backends cpu torch       # training step
    python benchmarks/models.py                      # paper size, 2 8 32 s, both hosts (long)
    python benchmarks/models.py --quick              # CPU size, 1 and 2 s, one rep (~1 min)
    python benchmarks/models.py --hosts singlepath --seconds 2 8 --reps 1
"""

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time

import torch
from hyperpyyaml import load_hyperpyyaml

from speechbrain_crossmamba.lobes.models import CONFIGS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
YAMLS = {"cpu": "hparams/models/tse.yaml", "paper": "hparams/models/tse_paper.yaml"}
TWINS = ("CrossMamba-TSE", "Transformer-TSE")
HOSTS = ("singlepath", "dualpath")
TARGETS = {("singlepath", 8.0): 1.4, ("singlepath", 32.0): 3.0}  # the issue's speed-up targets
SAMPLE_RATE = 8000
ENROLL_SECONDS = 2.0


def load_model(size, host, config, clue="enrollment", overrides=""):
    """Builds one extractor from the model YAML with plain-string choice lines.

    Parameters
    ----------
    size : str
        ``"cpu"`` or ``"paper"`` (a key of ``YAMLS``).
    host : str
        ``"singlepath"`` or ``"dualpath"``.
    config : str
        A key of ``CONFIGS``.
    clue : str
        ``"enrollment"`` or ``"label"``.
    overrides : str
        More YAML override lines, e.g. ``"kernel_size: 32"`` (the training YAMLs' frames).

    Returns
    -------
    torch.nn.Module
        The ``TargetExtractor``: ``model(mixture [B, T], clue) -> [B, T]``.
    """
    block, fusion = CONFIGS[config]
    overrides = (f"host: {host}\nblock_variant: {block}\nfusion_variant: {fusion}\n"
                 f"clue_variant: {clue}\n{overrides}")
    with open(os.path.join(ROOT, YAMLS[size])) as f:
        return load_hyperpyyaml(f, overrides)["extractor"]


def machine_stamp(argv=None):
    """The command (``argv``, default this process's), CPU model, usable cores, torch version
    and date of a measurement: every committed figure keeps the stamp of the run that made it.

    Example
    -------
    >>> stamp = machine_stamp([os.path.join(ROOT, "benchmarks", "streaming.py"), "--quick"])
    >>> stamp["command"], sorted(stamp)
    ('python benchmarks/streaming.py --quick', ['command', 'cores', 'date', 'device', 'torch'])
    """
    argv = sys.argv if argv is None else argv
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    cores = len(os.sched_getaffinity(0))
    return {"command": shlex.join(["python", os.path.relpath(os.path.abspath(argv[0]), ROOT), *argv[1:]]), "torch": torch.__version__,
            "date": time.strftime("%Y-%m-%d"), "device": f"{cpu}, {cores} cores", "cores": cores}


def count_parameters(model):
    """Returns (total, fusion) parameter counts; fusion: names containing ``fusions``."""
    total = sum(p.numel() for p in model.parameters())
    fusion = sum(p.numel() for name, p in model.named_parameters() if "fusions" in name)
    return total, fusion


def parameter_table(sizes, hosts):
    """Builds every (size, host, configuration) in this process and counts its parameters."""
    rows = []
    for size in sizes:
        for host in hosts:
            for config in CONFIGS:
                total, fusion = count_parameters(load_model(size, host, config))
                rows.append({"size": size, "host": host, "config": config,
                             "params_m": total / 1e6, "fusion_m": fusion / 1e6,
                             "fusion_share": fusion / total})
    print("| size | host | configuration | params (M) | fusion (M) | fusion share |")
    print("|---|---|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['size']} | {r['host']} | {r['config']} | {r['params_m']:.2f} "
              f"| {r['fusion_m']:.2f} | {100 * r['fusion_share']:.1f} % |")
    return rows


def _rss_mb():
    """Resident memory of this process now, in MB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mb():
    """Peak RSS of this process (VmHWM), in MB.

    Unlike ``getrusage``'s ``ru_maxrss``, which a child started by fork and exec inherits from
    its parent, the high-water mark belongs to this process's own address space.
    """
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def _reset_peak_rss():
    """Resets this process's VmHWM to its RSS now (``/proc/self/clear_refs``, Linux 4.0+), so
    that :func:`_peak_rss_mb` measures from here on, not the imports' or the set-up's peak.
    Returns False where the kernel refuses (the peak then counts from the process's start)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def make_inputs(seconds, clue, seed=0):
    """A random mixture [1, T] and a clue: a 2 s enrollment [1, T_e] or a class index [1]."""
    g = torch.Generator().manual_seed(seed)
    mixture = torch.randn(1, int(seconds * SAMPLE_RATE), generator=g)
    if clue == "label":
        return mixture, torch.tensor([3])
    return mixture, torch.randn(1, int(ENROLL_SECONDS * SAMPLE_RATE), generator=g)


def measure_case(case):
    """Runs in a fresh process: best time and peak RSS of one model on one duration.

    Parameters
    ----------
    case : dict
        ``size``, ``host``, ``config``, ``clue``, ``seconds``, ``reps`` and ``threads``.

    Returns
    -------
    dict
        ``case`` with ``ms`` (min over reps), ``times_ms``, ``frames`` (encoder frames),
        ``rss_mb`` (peak RSS of the process) and ``extra_mb`` (peak over RSS after building).
    """
    torch.set_num_threads(case["threads"])
    torch.manual_seed(0)
    model = load_model(case["size"], case["host"], case["config"], case["clue"],
                       case.get("overrides", "")).eval()
    set_backend(model, case.get("backend", "auto"))
    if case.get("train"):
        return dict(case, **measure_train_step(model, case))
    mixture, clue = make_inputs(case["seconds"], case["clue"])
    with torch.inference_mode():
        frames = model.encoder(mixture).shape[-1]
        _reset_peak_rss()
        base = _rss_mb()
        model(mixture, clue)  # warm-up
        times = []
        for _ in range(case["reps"]):
            t0 = time.perf_counter()
            model(mixture, clue)
            times.append(1e3 * (time.perf_counter() - t0))
    return dict(case, status="ok", ms=min(times), times_ms=times, frames=frames,
                rss_mb=_peak_rss_mb(), extra_mb=max(_peak_rss_mb() - base, 0.0))


def set_backend(model, backend):
    """Sets the scan and causal-conv backend of every Mamba mixer in ``model``."""
    from speechbrain_crossmamba.nnet.mamba import MambaMixer

    for module in model.modules():
        if isinstance(module, MambaMixer):
            module.scan_backend = module.conv_backend = backend


def measure_train_step(model, case):
    """Min time of one training step (forward, MSE, backward, Adam) at batch ``case["batch"]``."""
    model.train()
    g = torch.Generator().manual_seed(0)
    b, T = case["batch"], int(case["seconds"] * SAMPLE_RATE)
    mixture, target = torch.randn(b, T, generator=g), torch.randn(b, T, generator=g)
    if case["clue"] == "label":
        clue = torch.zeros(b, dtype=torch.long)
    else:
        clue = torch.randn(b, int(ENROLL_SECONDS * SAMPLE_RATE), generator=g)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    _reset_peak_rss()
    base = _rss_mb()
    times = []
    for i in range(case["reps"] + 1):  # the first is a warm-up
        t0 = time.perf_counter()
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(mixture, clue), target)
        loss.backward()
        opt.step()
        times.append(1e3 * (time.perf_counter() - t0))
    return dict(status="ok", ms=min(times[1:]), times_ms=times[1:], frames=None,
                rss_mb=_peak_rss_mb(), extra_mb=max(_peak_rss_mb() - base, 0.0))


def run_case(case, timeout):
    """Runs :func:`measure_case` in a subprocess; failures come back as a ``status``."""
    t0 = time.perf_counter()
    try:
        out = subprocess.run([sys.executable, os.path.abspath(__file__), "--case",
                              json.dumps(case)], capture_output=True, text=True, timeout=timeout,
                             check=False)
    except subprocess.TimeoutExpired:
        return dict(case, status="timeout", wall_s=time.perf_counter() - t0)
    wall = time.perf_counter() - t0
    if out.returncode == 0:
        return dict(json.loads(out.stdout.strip().splitlines()[-1]), wall_s=wall)
    err = (out.stderr.strip().splitlines() or [""])[-1]
    if out.returncode < 0 or "MemoryError" in err or "DefaultCPUAllocator" in err:
        status = "OOM/killed"  # a negative code is a signal, e.g. SIGKILL by the OOM killer
    else:
        status = "error"
    return dict(case, status=status, returncode=out.returncode, error=err[-300:], wall_s=wall)


def timing_table(args):
    """Times both twins for every host and duration; returns case rows and ratio rows."""
    cases, pairs = [], []
    for host in args.hosts:
        for seconds in args.seconds:
            transformer = None
            for backend in args.backends:
                pair = {}
                for config in TWINS:
                    if config == TWINS[1] and transformer is not None:
                        pair[config] = transformer  # no Mamba layer: timed once
                        continue
                    case = {"size": args.size, "host": host, "config": config,
                            "clue": args.clue, "seconds": seconds, "reps": args.reps,
                            "threads": args.threads, "backend": backend,
                            "train": args.train, "batch": args.batch,
                            "overrides": args.overrides}
                    r = run_case(case, args.timeout)
                    cases.append(r)
                    pair[config] = r
                    shown = f"{r['ms']:10.1f} ms" if r["status"] == "ok" else f"{r['status']:>13s}"
                    print(f"  {host:10s} {seconds:5g} s  {config:16s} [{backend}] {shown}  "
                          f"(case wall {r['wall_s']:.0f} s)", flush=True)
                transformer = pair[TWINS[1]]
                pairs.append(_pair_row(host, seconds, backend, pair, args.train))
    return cases, pairs


def _pair_row(host, seconds, backend, pair, train):
    """One row of the ratio table: both twins' times and peak RSS, and their ratio."""
    cm, tr = pair[TWINS[0]], pair[TWINS[1]]
    ok = cm["status"] == "ok" and tr["status"] == "ok"
    ratio = tr["ms"] / cm["ms"] if ok else None
    target = None if train else TARGETS.get((host, float(seconds)))
    row = {"host": host, "seconds": seconds, "backend": backend, "frames": cm.get("frames"),
           "ratio": ratio, "target": target,
           "target_met": None if ratio is None or target is None else ratio >= target}
    for prefix, r in (("crossmamba", cm), ("transformer", tr)):
        row.update({f"{prefix}_status": r["status"], f"{prefix}_ms": r.get("ms"),
                    f"{prefix}_rss_mb": r.get("rss_mb")})
    return row


def _cell(row, prefix, key, fmt):
    """Formats ``row[prefix_key]``, or the case's status when it did not finish."""
    if row[f"{prefix}_status"] != "ok":
        return row[f"{prefix}_status"]
    return format(row[f"{prefix}_{key}"], fmt)


def print_ratios(pairs):
    """The markdown table of times, peak RSS and ratios, with the targets where there are any."""
    print("| host | audio (s) | backend | frames | CrossMamba (ms) | Transformer (ms) "
          "| CrossMamba RSS (MB) | Transformer RSS (MB) | Transformer / CrossMamba | target | met |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in pairs:
        ratio = "n/a" if r["ratio"] is None else f"{r['ratio']:.2f}x"
        target = "" if r["target"] is None else f"{r['target']:g}x"
        met = {None: "", True: "yes", False: "no"}[r["target_met"]]
        print(f"| {r['host']} | {r['seconds']:g} | {r['backend']} | {r['frames'] or ''} "
              f"| {_cell(r, 'crossmamba', 'ms', '.1f')} | {_cell(r, 'transformer', 'ms', '.1f')} "
              f"| {_cell(r, 'crossmamba', 'rss_mb', '.0f')} "
              f"| {_cell(r, 'transformer', 'rss_mb', '.0f')} | {ratio} | {target} | {met} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: CPU size, 1 and 2 s, one rep (~1 min)")
    parser.add_argument("--size", choices=list(YAMLS), default="paper",
                        help="model YAML for the timings (default: paper)")
    parser.add_argument("--hosts", nargs="+", choices=HOSTS, default=list(HOSTS))
    parser.add_argument("--seconds", nargs="+", type=float, default=[2.0, 8.0, 32.0],
                        help="mixture durations to time")
    parser.add_argument("--clue", choices=["enrollment", "label"], default="enrollment")
    parser.add_argument("--reps", type=int, default=3, help="timed runs per case (minimum)")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                        help="torch threads in every case (default: the usable cores)")
    parser.add_argument("--timeout", type=float, default=900.0,
                        help="wall-clock limit per case, in seconds")
    parser.add_argument("--backends", nargs="+", default=["auto"],
                        choices=["auto", "cpu", "torch"],
                        help="scan and causal-conv backends of the Mamba layers, each timed")
    parser.add_argument("--train", action="store_true",
                        help="time a training step at batch --batch instead of inference")
    parser.add_argument("--batch", type=int, default=4, help="batch of --train")
    parser.add_argument("--overrides", default="",
                        help='model YAML overrides, e.g. "kernel_size: 32" (hparams/*_tse.yaml)')
    parser.add_argument("--skip-params", action="store_true", help="skip the parameter table")
    parser.add_argument("--out", help="JSON output (default: benchmarks/out/models.json, "
                        "or models_quick.json with --quick)")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(measure_case(json.loads(args.case))))
        return
    if args.quick:
        args.size, args.seconds, args.reps = "cpu", [1.0, 2.0], 1
    if args.train and not any(a.startswith("--seconds") for a in sys.argv):
        args.seconds = [2.0]
    if args.out is None:
        args.out = f"benchmarks/out/models{'_quick' if args.quick else ''}.json"
    machine = {"torch": torch.__version__, "threads": args.threads, "cpu_count": os.cpu_count(),
               "processor": platform.processor() or platform.machine(),
               "python": platform.python_version(), "loadavg_start": os.getloadavg()}
    print(f"torch {machine['torch']}, {args.threads} threads, {machine['cpu_count']} CPUs, "
          f"{machine['processor']}, load average {machine['loadavg_start'][0]:.2f} "
          "(other processes make timings noisy)")
    params = []
    if not args.skip_params:
        print("\n== parameters ==\n")
        params = parameter_table(list(YAMLS), HOSTS)
    what = f"training step, batch {args.batch}" if args.train else "inference, batch 1"
    print(f"\n== {what}, {args.size} size, {args.clue} clue, min of {args.reps} "
          "after one warm-up ==\n")
    t0 = time.perf_counter()
    cases, pairs = timing_table(args)
    machine["loadavg_end"] = os.getloadavg()
    print(f"\n(timings took {time.perf_counter() - t0:.0f} s; "
          f"load average now {machine['loadavg_end'][0]:.2f})\n")
    print_ratios(pairs)
    print("\nratio > 1: CrossMamba-TSE is faster. Targets (single path): >= 1.4x at 8 s, "
          ">= 3x at 32 s.")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"command": shlex.join([sys.executable, *sys.argv]), "machine": machine,
                   "size": args.size, "clue": args.clue, "reps": args.reps, "train": args.train,
                   "params": params, "cases": cases, "ratios": pairs}, f, indent=1)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
