#!/usr/bin/env bash
# S4: R6 (R1 + KLettres) continued in its folder to 24 epochs, as S3 continued R1 (issue 28).
set -u
cd /work/main; source /work/venv/bin/activate
python train.py hparams/crossmamba_tse.yaml --output_folder=results/real/r6_ft_real_klettres \
    --init_from=pretrained/crossmamba-tse-synthspeakers-8k "--train_voices=[real]" --eval_voices=real \
    "--real_sources=[fillets_cs, fillets_nl, drascula, fotaq, uqm, klettres]" \
    --lr=0.0003 --number_of_epochs=24 --max_train_minutes=null "--speed_range=[0.9, 1.1]" \
    --reverb_prob=0.3 "--noise_colors=[white, pink, brown, babble]" --noprogressbar > results/real/s4.log 2>&1
