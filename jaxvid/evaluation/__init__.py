"""Evaluation: datasets of videos with prompts (TGVE 2023, SVDiff-style folders, the toy world),
editing methods by registry, and the resumable runner behind ``jaxvid eval``."""
