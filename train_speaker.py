#!/usr/bin/env python3
"""Pretrain the ECAPA speaker clue (speaker verification with an angular margin).

Usage::

    python train_speaker.py hparams/ecapa_synthspeakers.yaml
    python train.py hparams/crossmamba_tse.yaml --clue_variant=speaker \
        --speaker_embedding_ckpt=results/ecapa_synthspeakers/1234/embedding_model.ckpt

Authors
 * speechbrain-crossmamba contributors
"""

import sys

from speechbrain_crossmamba.speaker_training import main

if __name__ == "__main__":
    main(sys.argv[1:])
