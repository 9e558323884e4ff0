"""Sparse autoencoders on assocmem's residual streams, scored against known ground truth.

:mod:`~assocmem.sae.model` (TopK and ReLU + L1 SAEs), :mod:`~assocmem.sae.train`,
:mod:`~assocmem.sae.metrics` (MMCS, MCC, explained variance, loss recovered, SVCCA) and
:mod:`~assocmem.sae.ground_truth` (planted features from compiled graphs). See docs/sae.md.
"""
