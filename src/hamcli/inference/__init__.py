"""Running a trained model: the predictor and its batched forward pass."""
