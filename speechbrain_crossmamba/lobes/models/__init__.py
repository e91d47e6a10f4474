"""Target-extraction models: the extractor wrapper and its dual-path and single-path hosts."""
