"""Training: options, data rows and batches, augmentation, optimiser and schedule, the loop, K folds, reports."""
