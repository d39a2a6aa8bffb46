"""Scoring predictions against reference masks: confusion matrices, IoU, DSC, agreement."""
