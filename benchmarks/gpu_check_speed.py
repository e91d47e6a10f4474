"""Sections 2 and 3 of ``benchmarks/gpu_check.py``: the timings, layer and whole models.

Section 2: one bidirectional CrossMamba layer against one cross-attention fusion at batch 1,
fp32 and bf16 autocast, forward and forward+backward. Section 3: CrossMamba-TSE against
Transformer-TSE (``benchmarks/models.py``), inference and one training step. Each case is
timed by ``gpu_check_helpers.measure``; an out-of-memory case is an ``oom`` row and the
larger sizes of that case are skipped, and so is every case past the time budget.

Authors
 * speechbrain-crossmamba contributors
"""

import functools
import itertools

import torch
from gpu_check_helpers import free_memory, predict_case

HOSTS = ("dualpath", "singlepath")
NAMES = ("transformer", "crossmamba")  # of the model pairs: baseline first
PASSES = ("inference", "train")  # of the models
PRECISIONS = ("fp32", "bf16")  # of the layer: bf16 is autocast
LAYER_PASSES = ("fwd", "fwd+bwd")


def pair_row(keys, a, b, names):
    """One ratio row from two cases ``a`` (baseline) and ``b``: times, ratio a / b, peaks.

    Example
    -------
    >>> r = pair_row(
    ...     {"L": 8},
    ...     {"status": "ok", "ms": 3.0},
    ...     {"status": "ok", "ms": 2.0},
    ...     ("attention", "crossmamba"),
    ... )
    >>> r["ratio"], round(r["saved_pct"], 1)
    (1.5, 33.3)
    """
    row = dict(keys)
    notes = []
    for name, case in zip(names, (a, b)):
        row[f"{name}_ms"] = case.get("ms")
        row[f"{name}_peak_mb"] = case.get("peak_mb")
        row[f"{name}_status"] = case["status"]
        if case["status"] != "ok":
            notes.append(
                f"{name}: {case['status']} {case.get('error', '')}".strip()
            )
    ok = a["status"] == b["status"] == "ok"
    row["ratio"] = a["ms"] / b["ms"] if ok else None
    row["saved_pct"] = 100.0 * (1.0 - b["ms"] / a["ms"]) if ok else None
    row["note"] = "; ".join(notes)
    return row


def layer_call(module, x, clue, train, precision, device):
    """One forward (inference mode) or forward+backward (a mean-square loss) of a layer.

    Arguments
    ---------
    module : torch.nn.Module
        ``module(x, clue) -> [B, L, N]``.
    x, clue : torch.Tensor
        The mixture and the clue, [B, L, N].
    train : bool
        Also the backward.
    precision : str
        ``"fp32"``, or ``"bf16"`` for bf16 autocast.
    device : torch.device
        Where it runs (the autocast's device type).
    """
    bf16 = precision == "bf16"
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        if not train:
            with torch.inference_mode():
                module(x, clue)
            return
        module.zero_grad(set_to_none=True)
        module(x, clue).float().square().mean().backward()


def layer(run, share):
    """Section 2: one CrossMamba layer against cross-attention at every length.

    Arguments
    ---------
    run : gpu_check.Run
        Its plan's ``d_model`` and ``lengths``; its report gets ``layer`` (one row per case)
        and ``layer_pairs`` (the ratios).
    share : float
        The section ends at this share of the budget: no case starts that is predicted
        (one call quadratic in L, from the last length) to end later; it says ``skipped``.
    """
    from speechbrain_crossmamba.nnet.cross_mamba import BiCrossMambaBlock
    from speechbrain_crossmamba.nnet.fusion import CrossAttentionFusion

    d, backend = run.plan["d_model"], run.backend
    torch.manual_seed(0)
    modules = {
        "attention": CrossAttentionFusion(d, nhead=8, d_ffn=0).to(run.device),
        "crossmamba": BiCrossMambaBlock(d, d_state=16, scan_backend=backend),
    }
    modules["crossmamba"].to(run.device)
    run.report["layer_note"] = (
        f"d_model {d}; attention: CrossAttentionFusion (8 heads, no FFN); "
        f"CrossMamba: BiCrossMambaBlock (d_state 16, scan {backend}); "
        "ratio > 1: CrossMamba faster."
    )
    stop, last = {}, {}  # per case: why it stops; (one call's seconds, L)
    for L in run.plan["lengths"]:
        x, clue = (torch.randn(1, L, d, device=run.device) for _ in range(2))
        for precision, pass_ in itertools.product(PRECISIONS, LAYER_PASSES):
            pair = {}
            for name, module in modules.items():
                key = (precision, pass_, name)
                guess = predict_case(last.get(key), L, 2, run.max_case_s)
                if not run.budget.allows(guess, share):
                    stop.setdefault(key, "time budget")
                if key in stop:
                    pair[name] = {"status": "skipped", "error": stop[key]}
                else:
                    train = pass_ != "fwd"
                    args = (module, x, clue, train, precision, run.device)
                    pair[name] = run.measure(
                        functools.partial(layer_call, *args)
                    )
                    last[key] = (call_seconds(pair[name]), L)
                    if pair[name]["status"] == "oom":
                        stop[key] = f"OOM at L={L}"
                case = {"L": L, "precision": precision, "pass": pass_}
                run.report["layer"].append(
                    dict(case, module=name, **pair[name])
                )
            pair = pair_row(case, *pair.values(), tuple(modules))
            run.report["layer_pairs"].append(pair)
        del x, clue


def call_seconds(row):
    """Seconds of one call of a measured case: its last warm-up, else its whole wall."""
    return row.get("warmup_s") or row["wall_s"]


def model_call(model, mixture, clue, train):
    """A closure: one inference of ``model``, or one training step (MSE, Adam).

    Arguments
    ---------
    model : torch.nn.Module
        ``model(mixture [B, T], clue) -> [B, T]``.
    mixture, clue : torch.Tensor
        Its inputs.
    train : bool
        A training step (the optimizer lives in the closure) instead of an inference.

    Returns
    -------
    callable
        No arguments.
    """
    model.train(train)
    if not train:

        def infer():
            with torch.inference_mode():
                model(mixture, clue)

        return infer
    opt = torch.optim.Adam(model.parameters(), lr=1e-5)
    target = torch.randn_like(mixture)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(model(mixture, clue), target)
        loss.backward()
        opt.step()

    return step


def build_twins(run, host):
    """CrossMamba-TSE and Transformer-TSE on ``host`` (the plan's size), on the device.

    Returns
    -------
    dict
        Configuration name -> model, with the run's scan backend in every Mamba mixer.
    """
    from models import TWINS, load_model  # benchmarks/models.py (hyperpyyaml)

    from speechbrain_crossmamba.nnet.mamba_mixer import MambaMixer

    built = {}
    for config in TWINS:
        torch.manual_seed(0)
        overrides = run.plan["overrides"]
        built[config] = load_model(
            run.plan["size"], host, config, overrides=overrides
        ).to(run.device)
        for module in built[config].modules():  # the causal conv stays "auto"
            if isinstance(module, MambaMixer):
                module.scan_backend = run.backend
    return built


def models(run, share):
    """Section 3: CrossMamba-TSE against Transformer-TSE, inference and training step.

    Arguments
    ---------
    run : gpu_check.Run
        Its plan's ``size``, ``overrides``, ``seconds`` and ``enroll_samples``; its report
        gets ``models`` (one row per case) and ``model_pairs`` (the ratios).
    share : float
        The section ends at this share of the budget: no case starts that is predicted
        (from the last duration: linearly, quadratically for the Transformer) to end later.
    """
    from models import ENROLL_SECONDS, SAMPLE_RATE, TWINS, make_inputs

    enroll = run.plan["enroll_samples"]
    enroll = ENROLL_SECONDS if enroll is None else enroll / SAMPLE_RATE
    run.report["model_note"] = (
        f"{run.plan['size']}-size models (benchmarks/models.py YAMLS), fp32, scan "
        f"{run.backend}; inference batch 1, training step batch {run.args.train_batch}"
        f"; {enroll} s enrollment; ratio > 1 and time saved > 0: CrossMamba faster "
        "(the paper: > 40 % faster inference)."
    )
    for host in HOSTS:
        last, over = {}, not run.budget.allows(0.0, share)
        built = dict.fromkeys(TWINS) if over else build_twins(run, host)
        stop = (
            {(c, p): "time budget" for c in TWINS for p in PASSES}
            if over
            else {}
        )
        for seconds in run.plan["seconds"]:
            mixture, clue = make_inputs(seconds, "enrollment")
            mixture = mixture.to(run.device)
            clue = clue[:, : run.plan["enroll_samples"]].to(run.device)
            for pass_ in PASSES:
                pair, b = {}, run.args.train_batch if pass_ == "train" else 1
                for config, model in built.items():
                    key, power = (config, pass_), 2 if config == TWINS[1] else 1
                    guess = predict_case(
                        last.get(key), seconds, power, run.max_case_s
                    )
                    if not run.budget.allows(guess, share):
                        stop.setdefault(key, "time budget")
                    if key in stop:
                        pair[config] = {"status": "skipped", "error": stop[key]}
                    else:
                        fn = model_call(
                            model,
                            mixture.repeat(b, 1),
                            clue.repeat(b, 1),
                            pass_ == "train",
                        )
                        pair[config] = run.measure(fn)
                        del fn
                        last[key] = (call_seconds(pair[config]), seconds)
                        if pair[config]["status"] == "oom":
                            stop[key] = f"OOM at {seconds:g} s"
                    case = {"host": host, "seconds": seconds, "pass": pass_}
                    run.report["models"].append(
                        dict(case, config=config, **pair[config])
                    )
                run.report["model_pairs"].append(
                    pair_row(case, pair[TWINS[1]], pair[TWINS[0]], NAMES)
                )
        del built
        free_memory(run.device)
