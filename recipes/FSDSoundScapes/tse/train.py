#!/usr/bin/env python3
"""Recipe: train and evaluate a target extractor on FSDSoundScapes.

Task: target sound extraction, class-label clue.

Usage (from this folder)::

    python train.py hparams/crossmamba_tse.yaml --data_folder=/path/to/data
    torchrun --nproc_per_node=4 train.py hparams/crossmamba_tse.yaml --data_folder=/path/to/data

The YAML holds the data preparation (prepare_*.py in this folder), the model and the
training; the training loop is the shared speechbrain_crossmamba.training.TSEBrain.

Authors
 * speechbrain-crossmamba contributors
"""

import sys

from speechbrain_crossmamba.training import main

if __name__ == "__main__":
    main(sys.argv[1:])
