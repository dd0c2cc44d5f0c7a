"""The shared machinery: capture one layer's activations and their gradients, then weight them.

A subclass overrides one hook, `combine(activations, gradients) -> (N, h, w) map`. Hooks live
only inside a context manager and are removed on exit, even after an error; gradients are taken
with `torch.autograd.grad`, so no parameter's `.grad` is touched and the model is left as it was.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import nn

from hamcli.errors import UsageError


@contextlib.contextmanager
def capture_layer(layer: nn.Module) -> Iterator[dict[str, torch.Tensor]]:
    """Record `layer`'s output while the block runs; the hook is gone afterwards."""
    store: dict[str, torch.Tensor] = {}

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        if not isinstance(output, torch.Tensor) or output.dim() != 4:
            raise UsageError(f"layer {type(module).__name__} does not output a (N, C, H, W) feature map; "
                             "choose another with --layer (see --list-layers)")
        store["activations"] = output
        # Later in-place operations (e.g. DenseNet's final ReLU) must not overwrite what we captured.
        return output.clone()

    handle = layer.register_forward_hook(hook)
    try:
        yield store
    finally:
        handle.remove()


def find_layer(model: nn.Module, name: str) -> nn.Module:
    try:
        return model.get_submodule(name)
    except AttributeError:
        raise UsageError(f"--layer {name!r}: no such layer in this model; see --list-layers") from None


class BaseCAM:
    """Computes class activation maps for a model and one of its layers."""

    name = "base"

    def __init__(self, model: nn.Module, layer: str) -> None:
        self.model = model
        self.layer_name = layer
        self.layer = find_layer(model, layer)

    def combine(self, activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, x: torch.Tensor, target: torch.Tensor | Callable[[torch.Tensor], torch.Tensor]
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """Maps (N, h, w), zero or positive, in the layer's own units (callers normalise), and the model's
        probabilities (N, classes).

        `target` is the class index per image, or a callable choosing it from the logits
        (e.g. `lambda logits: logits.argmax(1)` to explain the prediction) in the same forward pass.
        """
        was_training = self.model.training
        self.model.eval()
        try:
            x = x.detach().clone().requires_grad_(True)  # a graph even when every parameter is frozen
            with torch.enable_grad(), capture_layer(self.layer) as store:
                logits = self.model(x)
                index = target(logits.detach()) if callable(target) else target
                score = logits.gather(1, index.view(-1, 1)).sum()
                gradients = torch.autograd.grad(score, store["activations"])[0]
            activations = store["activations"].detach()
            cams = torch.relu(self.combine(activations, gradients.detach()))
            return torch.nan_to_num(cams, nan=0.0), logits.detach().softmax(1)
        finally:
            self.model.train(was_training)
