"""Target-extraction models: the extractor wrapper and its dual-path and single-path hosts."""

#: The configurations of ``hparams/models/tse.yaml``: name -> (block_variant, fusion_variant).
CONFIGS = {
    "CrossMamba-TSE": ("mamba", "crossmamba"),
    "Transformer-TSE": ("transformer", "attention"),
    "Mamba-TSE": ("mamba", "mamba"),
    "concat-TSE": ("mamba", "concat"),
    "FiLM-TSE": ("mamba", "film"),
}
