"""The model zoo: architectures by name, pretrained weights, checkpoints and the precision to run them in."""
