"""Builds the fusion layer of a HyperPyYAML file and runs it on random input.

Usage::

    python -m speechbrain_crossmamba.demo hparams/crossmamba_demo.yaml [--overrides YAML]

Authors
 * speechbrain-crossmamba contributors
"""

import argparse
import inspect
import sys
import time

import torch
from hyperpyyaml import load_hyperpyyaml

from speechbrain_crossmamba.nnet.selective_scan import resolve_backend


def run(hparams):
    """Runs ``hparams["fusion"]`` forward and backward on random mixture and clue features.

    Returns a dict with the output shape, parameter count and timings.

    Example
    -------
    >>> from speechbrain_crossmamba.nnet.cross_mamba import SBCrossMambaBlock
    >>> hp = dict(fusion=SBCrossMambaBlock(1, 16, d_clue=8, d_state=4, interpolate_clue=True),
    ...           batch_size=2, frames=50, clue_frames=10, d_model=16, d_clue=8)
    >>> run(hp)["output_shape"]
    (2, 50, 16)
    """
    fusion = hparams["fusion"]
    mix = torch.randn(hparams["batch_size"], hparams["frames"], hparams["d_model"])
    clue_shape = (hparams["batch_size"], hparams["clue_frames"], hparams["d_clue"])
    takes_clue = "clue" in inspect.signature(fusion.forward).parameters
    args = [torch.randn(*clue_shape)] if takes_clue else []
    start = time.perf_counter()
    out = fusion(mix, *args)
    forward_s = time.perf_counter() - start
    start = time.perf_counter()
    out.pow(2).mean().backward()
    backward_s = time.perf_counter() - start
    if not torch.isfinite(out).all():
        raise RuntimeError("the fusion layer produced non-finite values")
    return dict(
        output_shape=tuple(out.shape),
        parameters=sum(p.numel() for p in fusion.parameters()),
        forward_s=forward_s,
        backward_s=backward_s,
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("hparams", help="HyperPyYAML file, e.g. hparams/crossmamba_demo.yaml")
    parser.add_argument("--overrides", default="", help="YAML overrides, e.g. 'frames: 2000'")
    args = parser.parse_args(argv)
    with open(args.hparams) as f:
        hparams = load_hyperpyyaml(f, args.overrides)
    stats = run(hparams)
    print(f"fusion:   {type(hparams['fusion']).__name__} ({stats['parameters']:,} parameters)")
    print(f"backend:  {resolve_backend('auto', torch.device('cpu'))} (selective scan)")
    print(f"input:    mixture {hparams['batch_size']}x{hparams['frames']}x{hparams['d_model']}, "
          f"clue {hparams['batch_size']}x{hparams['clue_frames']}x{hparams['d_clue']}")
    print(f"output:   {'x'.join(map(str, stats['output_shape']))}")
    print(f"forward:  {stats['forward_s'] * 1e3:.1f} ms, backward: {stats['backward_s'] * 1e3:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
