"""Data: the embedded synthetic corpora, dynamic mixing, and the CSV pipelines of the recipes."""
