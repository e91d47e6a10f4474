"""Export of a trained extractor as a self-contained pretrained folder.

The folder holds what ``from_hparams(source=folder)`` needs and nothing else:

- ``hyperparams.yaml``: the model file (``hparams/models/tse.yaml``) with the trained
  configuration written in and every ``!ref`` resolved, plus ``modules`` and a ``pretrainer``
  with ``loadables`` only (the files are found next to it);
- ``extractor.ckpt``: the weights.

Authors
 * speechbrain-crossmamba contributors
"""

import os

import torch
import yaml
from hyperpyyaml import load_hyperpyyaml, resolve_references

INFERENCE_PART = """
# ---- inference -----------------------------------------------------------------
modules:
    extractor: !ref <extractor>

pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        extractor: !ref <extractor>
"""

_PLAIN = (str, int, float, bool, type(None))


def _is_plain(value):
    if isinstance(value, (list, tuple)):
        return all(_is_plain(v) for v in value)
    return isinstance(value, _PLAIN)


def model_overrides(model_hparams):
    """The plain top-level values of a loaded model file: the configuration that was built.

    Arguments
    ---------
    model_hparams : dict
        The loaded model file (e.g. ``hparams["model"]`` of a training file that includes it).

    Returns
    -------
    dict
        ``key -> value`` for every top-level value that is plain (strings, numbers, lists of
        them): the choices and sizes, after every override and ``!ref``.

    Example
    -------
    >>> hp = load_hyperpyyaml(
    ...     open("hparams/models/tse.yaml"), {"fusion_variant": "attention"}
    ... )
    >>> overrides = model_overrides(hp)
    >>> overrides["fusion_variant"], "extractor" in overrides
    ('attention', False)
    """
    return {k: v for k, v in model_hparams.items() if _is_plain(v)}


def export_pretrained(extractor, model_hparams, model_file, folder, extra=None):
    """Writes ``folder/hyperparams.yaml`` and ``folder/extractor.ckpt``, then checks they load.

    Arguments
    ---------
    extractor : torch.nn.Module
        The trained extractor (a DDP wrapper is unwrapped).
    model_hparams : dict
        The loaded model file it was built from (``hparams["model"]``).
    model_file : str
        Path of that model file (``hparams/models/tse.yaml``).
    folder : str
        Output folder (created).
    extra : dict, optional
        Plain values added to ``hyperparams.yaml`` (e.g. the class names of a label model).

    Example
    -------
    >>> import tempfile
    >>> hp = load_hyperpyyaml(
    ...     open("hparams/models/tse.yaml"), {"N": 16, "num_layers": 1}
    ... )
    >>> folder = tempfile.mkdtemp()
    >>> export_pretrained(
    ...     hp["extractor"],
    ...     hp,
    ...     "hparams/models/tse.yaml",
    ...     folder,
    ...     {"note": "demo"},
    ... )
    >>> sorted(os.listdir(folder))
    ['extractor.ckpt', 'hyperparams.yaml']
    >>> from speechbrain.inference.interfaces import Pretrained
    >>> model = Pretrained.from_hparams(source=folder, savedir=folder)
    >>> model.hparams.note, model.mods.extractor.sample_rate
    ('demo', 8000)
    """
    extractor = getattr(extractor, "module", extractor)
    os.makedirs(folder, exist_ok=True)
    with open(model_file, encoding="utf-8") as f:
        text = resolve_references(f, model_overrides(model_hparams)).getvalue()
    header = "# Pretrained target extractor: load with from_hparams(source=<this folder>).\n"
    header += (
        "# Written by speechbrain_crossmamba.export from "
        + os.path.basename(model_file)
        + ".\n"
    )
    if extra:
        text += "\n" + yaml.safe_dump(dict(extra), sort_keys=False)
    text = header + text + INFERENCE_PART
    state = {k: v.detach().cpu() for k, v in extractor.state_dict().items()}
    rebuilt = load_hyperpyyaml(text)["extractor"]
    rebuilt.load_state_dict(
        state
    )  # strict: the written configuration is the trained one
    with open(
        os.path.join(folder, "hyperparams.yaml"), "w", encoding="utf-8"
    ) as f:
        f.write(text)
    torch.save(state, os.path.join(folder, "extractor.ckpt"))
