"""DINO self-supervised pre-training (Caron et al. 2021) and the evaluation of its features.

Head, loss, schedules and multi-crop follow facebookresearch/dino; the job runs in the shared
job framework (:mod:`headless.jobs`); k-NN, linear, label-budget and embedding tools read any
backbone through one cached feature extractor.
"""
