"""Whole target-extraction models from hparams/models: variants, clues, padding, bad input."""

import pathlib

import pytest
import torch
import torch.nn as nn
from hyperpyyaml import load_hyperpyyaml

from speechbrain_crossmamba.lobes.models import CONFIGS
from speechbrain_crossmamba.nnet import fusion as fusion_zoo

MODELS = pathlib.Path(__file__).resolve().parents[1] / "hparams" / "models"
SR = 8000
HOSTS = ("dualpath", "singlepath")


def load(file="tse.yaml", **choices):
    overrides = "\n".join(f"{k}: {v}" for k, v in choices.items())
    with open(MODELS / file) as f:
        return load_hyperpyyaml(f, overrides)


def build(config="CrossMamba-TSE", file="tse.yaml", seed=0, **choices):
    torch.manual_seed(seed)
    block, fusion = CONFIGS[config]
    choices = dict(dict(block_variant=block, fusion_variant=fusion), **choices)
    return load(file, **choices)["extractor"]


def audio(*shape, seed=1):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize("config", CONFIGS)
def test_every_variant_trains_on_one_second(config, host):
    model = build(config, host=host)
    mix, enr = audio(2, SR), audio(2, SR, seed=2)
    out = model(mix, enr)
    assert out.shape == mix.shape and torch.isfinite(out).all()
    out.pow(2).mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    # the clue path learns: its encoder and the fusion modules get gradients
    for part in (model.clue_encoder, model.masknet.fusions):
        assert sum(p.grad.abs().sum() for p in part.parameters()) > 0


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize("config", CONFIGS)
def test_paper_size_builds_with_comparable_size(config, host):
    model = build(config, file="tse_paper.yaml", host=host)
    params = sum(p.numel() for p in model.parameters())
    assert model.encoder.conv1d.out_channels == 256
    twin = build("Transformer-TSE", file="tse_paper.yaml", host=host)
    ratio = params / sum(p.numel() for p in twin.parameters())
    if config in ("CrossMamba-TSE", "Mamba-TSE"):  # the compared models: within 10 %
        assert 0.9 < ratio < 1.1, ratio
    elif config != "Transformer-TSE":  # concat and FiLM fuse with one linear map: smaller
        assert 0.75 < ratio <= 1.0, ratio
        crossmamba = build("CrossMamba-TSE", file="tse_paper.yaml", host=host)
        assert params <= sum(p.numel() for p in crossmamba.parameters())


def test_paper_dual_path_uses_sepformer_chunks():
    masknet = build(file="tse_paper.yaml").masknet
    assert masknet.K == 250 and masknet.num_layers == 2


@pytest.mark.parametrize("fusion_variant", ["attention", "mamba", "concat", "film", "add", "multiply"])
def test_swapping_only_the_fusion_line(fusion_variant):
    base = build(seed=0)
    swapped = build(seed=0, fusion_variant=fusion_variant)
    kinds = {type(m.fusion) for m in swapped.masknet.fusions.values()}
    assert kinds != {fusion_zoo.CrossMambaFusion} and len(kinds) == 1
    rest = lambda m: {k: v.shape for k, v in m.state_dict().items() if ".fusions." not in k}  # noqa
    assert rest(base) == rest(swapped)  # nothing but the fusion modules changed


def _clue_changes_output(model, clue_a, clue_b, mix):
    with torch.no_grad():
        return not torch.allclose(model(mix, clue_a), model(mix, clue_b), atol=1e-6)


class _IgnoreClue(nn.Module):
    """A clue-independent 'fusion', as the control of the clue test."""

    def __init__(self, *args, **kwargs):
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x, clue, mask=None):
        return x


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize("config", CONFIGS)
def test_the_clue_matters(config, host):
    model = build(config, host=host).eval()
    mix, enr_a, enr_b = audio(1, SR), audio(1, SR, seed=5), audio(1, SR, seed=6)
    assert _clue_changes_output(model, enr_a, enr_b, mix)
    for point in model.masknet.fusions.values():  # the control fails the same check
        point.fusion = _IgnoreClue()
    assert not _clue_changes_output(model, enr_a, enr_b, mix)


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize("config", ["CrossMamba-TSE", "Transformer-TSE", "Mamba-TSE"])
def test_padding_invariance(config, host):
    model = build(config, host=host).eval()
    mix, enr = audio(2, 9000), audio(2, 7000, seed=3)
    n, e = 6003, 5001  # the second item is shorter, in both mixture and enrollment
    mix[1, n:] = 123.0  # padding content must not matter at all
    enr[1, e:] = -7.0
    with torch.no_grad():
        batch = model(mix, enr, torch.tensor([1.0, n / 9000]), torch.tensor([1.0, e / 7000]))
        first = model(mix[:1], enr[:1])
        second = model(mix[1:, :n], enr[1:, :e])
    torch.testing.assert_close(batch[:1], first, atol=2e-5, rtol=0)
    torch.testing.assert_close(batch[1:, :n], second, atol=2e-5, rtol=0)
    assert batch[1, n:].abs().max() == 0


@pytest.mark.parametrize(
    "clue_variant, clue",
    [
        ("label", torch.tensor([3, 40])),
        ("label", torch.tensor([[1.0] + [0.0] * 39 + [1.0]] * 2)),  # multi-hot
        ("vector", audio(2, 192)),
        ("sequence", audio(2, 25, 512)),  # 1 s of 25 fps lip embeddings
    ],
)
@pytest.mark.parametrize("fusion_at", ["intra", "inter", "both"])
def test_other_clues(clue_variant, clue, fusion_at):
    model = build(clue_variant=clue_variant, fusion_at=fusion_at)
    out = model(audio(2, SR), clue)
    assert out.shape == (2, SR) and torch.isfinite(out).all()


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize(
    "clue_variant, clue_a, clue_b",
    [
        ("label", torch.tensor([3]), torch.tensor([40])),
        ("vector", audio(1, 192, seed=5), audio(1, 192, seed=6)),
        ("sequence", audio(1, 25, 512, seed=5), audio(1, 25, 512, seed=6)),
    ],
)
def test_the_label_vector_and_sequence_clues_matter(clue_variant, clue_a, clue_b, host):
    model = build(clue_variant=clue_variant, host=host).eval()
    mix = audio(1, SR)
    assert _clue_changes_output(model, clue_a, clue_b, mix)
    for point in model.masknet.fusions.values():  # the control fails the same check
        point.fusion = _IgnoreClue()
    assert not _clue_changes_output(model, clue_a, clue_b, mix)


def test_sequence_clue_on_the_single_path():
    model = build(clue_variant="sequence", host="singlepath")
    assert model(audio(2, SR), audio(2, 25, 512)).shape == (2, SR)


@pytest.mark.parametrize(
    "fusion_at, fusion_layers, points",
    [("intra", "all", 2), ("inter", "all", 2), ("both", "all", 4), ("both", "first", 2),
     ("inter", "[1]", 1)],
)  # fmt: skip
def test_fusion_positions(fusion_at, fusion_layers, points):
    model = build(fusion_at=fusion_at, fusion_layers=fusion_layers)
    keys = list(model.masknet.fusions)
    assert len(keys) == points
    places = {"intra", "inter"} if fusion_at == "both" else {fusion_at}
    assert {k.split("_")[1] for k in keys} == places


def test_enrollment_shares_the_mixture_encoder():
    model = build()
    assert model.clue_encoder.encoder is model.encoder


def test_attentive_pooling():
    model = build(enroll_pooling="attentive")
    assert model(audio(2, SR), audio(2, SR, seed=2)).shape == (2, SR)


def test_silent_mixture_gives_silence():
    model = build()
    out = model(torch.zeros(2, SR), audio(2, SR))
    assert torch.isfinite(out).all() and out.abs().max() == 0


BAD_INPUTS = [
    (lambda: (audio(2, 2, SR), audio(2, SR)), "mixture must be mono"),
    (lambda: (torch.zeros(2, 0), audio(2, SR)), "mixture is empty"),
    (lambda: (audio(2, SR), torch.zeros(2, 0)), "enrollment is empty"),
    (lambda: (audio(2, SR), audio(2, 2000)), r"enrollment is 0\.25 s long; the minimum is 0\.50 s"),
    (lambda: (audio(2, SR), audio(3, SR)), "clue batch size 3 does not match mixture batch size 2"),
    (lambda: (audio(2, SR).index_fill(1, torch.tensor([7]), float("nan")), audio(2, SR)),
     "mixture contains NaN or Inf"),
    (lambda: (audio(2, SR), audio(2, SR).index_fill(1, torch.tensor([7]), float("inf"))),
     "enrollment contains NaN or Inf"),
    (lambda: (audio(2, SR), torch.zeros(2, SR)), "enrollment is silent"),
    (lambda: (audio(2, SR), None), "no clue given"),
]  # fmt: skip


@pytest.mark.parametrize("make, message", BAD_INPUTS)
def test_bad_input_raises_a_one_line_error(make, message):
    model = build()
    mix, clue = make()
    with pytest.raises(ValueError, match=message) as err:
        model(mix, clue)
    assert "\n" not in str(err.value)


def test_short_enrollment_inside_a_padded_batch_is_caught():
    model = build()
    with pytest.raises(ValueError, match="minimum is 0.50 s"):
        model(audio(2, SR), audio(2, SR), clue_lengths=torch.tensor([1.0, 0.3]))


@pytest.mark.parametrize("label, message", [
    (torch.tensor([0, 41]), "class index 41 is out of range for 41 classes"),
    (torch.tensor([-1, 2]), "class index -1 is out of range"),
    (torch.zeros(2, 41), "no active class"),
    (torch.ones(2, 40), r"must be \[batch, 41\]"),
])  # fmt: skip
def test_bad_labels(label, message):
    model = build(clue_variant="label")
    with pytest.raises(ValueError, match=message):
        model(audio(2, SR), label)


def test_unknown_variant_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown choice 'crosmamba'; expected one of"):
        load(fusion_variant="crosmamba")


def test_mixture_shorter_than_one_frame_still_works():
    model = build()
    assert model(audio(1, 10), audio(1, SR)).shape == (1, 10)


@pytest.mark.slow
@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize("config", CONFIGS)
def test_paper_size_trains_on_one_second(config, host):
    """Paper size, forward and backward on 1 s (about 1 min in all on 2 cores: kept out of CI)."""
    model = build(config, file="tse_paper.yaml", host=host)
    mix = audio(1, SR)
    out = model(mix, audio(1, SR, seed=2))
    assert out.shape == mix.shape
    out.pow(2).mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
