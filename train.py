#!/usr/bin/env python3
"""Train and evaluate a target extractor; the model, data and training are all in the YAML.

Usage::

    python train.py hparams/crossmamba_tse.yaml                # CrossMamba-TSE on SynthSpeakers
    python train.py hparams/transformer_tse.yaml               # the cross-attention baseline
    python train.py hparams/crossmamba_tse.yaml --number_of_epochs=1 --precision=bf16
    torchrun --nproc_per_node=2 train.py hparams/crossmamba_tse.yaml   # DDP

Writes ``<output_folder>/``: ``train_log.txt``, ``save/`` (checkpoints; a rerun resumes),
``test_results.csv``, ``examples/`` and ``pretrained/`` (load with ``from_hparams``).

Authors
 * speechbrain-crossmamba contributors
"""

import sys

from speechbrain_crossmamba.training import main

if __name__ == "__main__":
    main(sys.argv[1:])
