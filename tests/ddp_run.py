"""Run by ``torch.distributed.run`` in ``test_training.py``: one rank of a training run that
then saves the extractor weights it ended with, so the test can compare the ranks.

Usage: ``ddp_run.py OUT_DIR HPARAMS_FILE [--key=value ...]``
"""

import os
import sys

import torch

from speechbrain_crossmamba.training import main

if __name__ == "__main__":
    brain = main(sys.argv[2:])
    extractor = getattr(brain.modules.extractor, "module", brain.modules.extractor)
    rank = os.environ["RANK"]
    torch.save(extractor.state_dict(), os.path.join(sys.argv[1], f"rank{rank}.pt"))
