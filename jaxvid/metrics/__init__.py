"""Measuring edits: CLIP video metrics (``clip.py``) and toy-world ground-truth metrics (``toyworld.py``)."""
