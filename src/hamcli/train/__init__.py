"""Training: data on uint8 batches, augmentation, precision choice, the loop, checkpoints."""
