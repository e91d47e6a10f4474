"""The ECAPA speaker clue: the module, its pretraining recipe, and a TSE run that starts from it."""

import os
import re

import pytest
import torch
from hyperpyyaml import load_hyperpyyaml

from speechbrain_crossmamba.nnet.clue import SpeakerEmbedding, SpeakerEmbeddingClue
from speechbrain_crossmamba.speaker_training import load_speaker_embedding, save_speaker_embedding
from speechbrain_crossmamba.speaker_training import main as train_speaker
from speechbrain_crossmamba.training import main
from test_training import HPARAMS, TINY_MODEL, TINY_SPEAKERS, tiny_args

MODEL = os.path.join(HPARAMS, "models", "tse.yaml")
TINY_ECAPA = ["--ecapa_channels=16", "--ecapa_embedding=8"]


def _extractor(**sizes):
    choices = {"N": 16, "N_encoder": 16, "num_layers": 1, "d_ffn": 32, "clue_variant": "speaker"}
    return load_hyperpyyaml(open(MODEL), {**choices, "ecapa_channels": 16, "ecapa_embedding": 8, **sizes})["extractor"]


def test_the_speaker_clue_extracts_and_refuses_bad_enrollments():
    extractor = _extractor().eval()
    with torch.no_grad():
        out = extractor(torch.randn(2, 8000), torch.randn(2, 12000), clue_lengths=torch.tensor([1.0, 0.5]))
    assert out.shape == (2, 8000) and torch.isfinite(out).all()
    clue = extractor.clue_encoder
    with pytest.raises(ValueError, match="enrollment is 0.25 s long"):
        clue(torch.randn(1, 2000))
    with pytest.raises(ValueError, match="silent"):
        clue(torch.zeros(1, 8000))
    with pytest.raises(ValueError, match="multiple of 8"):
        SpeakerEmbeddingClue(d_clue=8, channels=12)
    with pytest.raises(ValueError, match="batches of 2 or more"):
        clue.train()(torch.randn(1, 8000))


def test_what_lies_past_the_length_does_not_count():
    """Two enrollments that differ only past their length give the same embedding, close to
    the enrollment alone (only the convolutions' edge differs: zeros against no padding)."""
    embed = SpeakerEmbedding(channels=16, embedding_size=8).eval()
    wav = torch.randn(1, 8000)
    with torch.no_grad():
        alone = embed(wav)
        a, b = (embed(torch.cat([wav, 3 * torch.randn(1, 8000)], dim=1), torch.tensor([0.5])) for _ in "ab")
        unmasked = embed(torch.cat([wav, 3 * torch.randn(1, 8000)], dim=1))
    assert torch.equal(a, b)
    assert (a - alone).norm() < 0.1 * alone.norm() < (unmasked - alone).norm()


def test_load_speaker_embedding_checks_the_clue_the_file_and_the_sizes(tmp_path):
    extractor = _extractor()
    path = str(tmp_path / "embedding_model.ckpt")
    source = _extractor().clue_encoder.embedding_model
    save_speaker_embedding(source, path)
    load_speaker_embedding(extractor, path)
    for name, value in extractor.clue_encoder.embedding_model.state_dict().items():
        assert torch.equal(value, source.state_dict()[name])
    with pytest.raises(SystemExit, match="set clue_variant: speaker"):
        load_speaker_embedding(_extractor(clue_variant="enrollment"), path)
    with pytest.raises(SystemExit, match="no such file"):
        load_speaker_embedding(extractor, str(tmp_path / "missing.ckpt"))
    with pytest.raises(SystemExit, match="was trained with .*'channels': 16"):
        load_speaker_embedding(_extractor(ecapa_channels=24), path)
    with pytest.raises(SystemExit, match="was trained with .*'sample_rate': 8000"):
        load_speaker_embedding(_extractor(sample_rate=16000), path)
    (tmp_path / "junk.ckpt").write_text("not a checkpoint")
    with pytest.raises(SystemExit, match="is not a train_speaker.py file"):
        load_speaker_embedding(extractor, str(tmp_path / "junk.ckpt"))


def test_pretraining_learns_then_a_tse_run_starts_from_it(tmp_path):
    data, out = str(tmp_path / "data"), str(tmp_path / "ecapa")
    args = [os.path.join(HPARAMS, "ecapa_synthspeakers.yaml"), f"--data_folder={data}", f"--output_folder={out}",
            "--number_of_epochs=6", "--epoch_size=24", "--batch_size=4", "--crop_seconds=1.0", "--noprogressbar",
            ] + TINY_SPEAKERS + TINY_ECAPA  # the corpus of the TSE run below
    train_speaker(args)
    log = open(os.path.join(out, "train_log.txt")).read()
    losses = [float(x) for x in re.findall(r"train loss: ([-0-9.e+]+)", log)]
    assert len(losses) == 6 and losses[-1] < losses[0]  # the margin loss falls
    assert re.search(r"test eer: [0-9.e-]+", log)
    ckpt = os.path.join(out, "embedding_model.ckpt")
    assert os.path.isfile(ckpt)
    run = str(tmp_path / "tse")
    extra = ["--clue_variant=speaker", f"--speaker_embedding_ckpt={ckpt}", "--warm_start_epochs=0"]
    args = [TINY_MODEL[:-1] + ", ecapa_channels: 16, ecapa_embedding: 8}" if a == TINY_MODEL else a
            for a in tiny_args(run, data, extra=extra)]
    main(args)
    assert "started from the speaker embedding" in open(os.path.join(run, "log.txt")).read()
    assert os.path.isfile(os.path.join(run, "test_results.csv"))

