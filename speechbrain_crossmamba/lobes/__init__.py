"""Models assembled from the layers of ``speechbrain_crossmamba.nnet``."""
