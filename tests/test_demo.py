"""The README's first command: the demo builds a fusion layer from YAML and runs it."""

import pathlib

from speechbrain_crossmamba import demo

HPARAMS = pathlib.Path(__file__).resolve().parents[1] / "hparams" / "crossmamba_demo.yaml"


def test_demo_runs_the_shipped_yaml(capsys):
    assert demo.main([str(HPARAMS), "--overrides", "frames: 200"]) == 0
    out = capsys.readouterr().out
    assert "SBCrossMambaBlock" in out and "output:   2x200x64" in out


def test_fusion_is_swapped_by_editing_one_yaml_line(tmp_path, capsys):
    text = HPARAMS.read_text().replace(
        "fusion: !new:speechbrain_crossmamba.nnet.cross_mamba.SBCrossMambaBlock",
        "fusion: !new:speechbrain_crossmamba.nnet.mamba.SBMambaBlock",
    )
    text = "\n".join(
        line for line in text.splitlines() if "d_clue: !ref" not in line and "interpolate_clue" not in line
    )
    path = tmp_path / "mamba.yaml"
    path.write_text(text)
    assert demo.main([str(path), "--overrides", "frames: 200"]) == 0
    assert "SBMambaBlock" in capsys.readouterr().out
