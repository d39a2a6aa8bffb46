"""Prediction at the input size, resized back to each image's size; pseudo-labeling of reference folds."""
