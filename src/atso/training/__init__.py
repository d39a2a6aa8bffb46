"""Training one model on (image, target) pairs; the trainer knows nothing of strategies."""
