"""The Task protocol: what the trainer and the evaluation stage call on a problem's model.

A task is a torch.nn.Module holding the whole model (upstream → featurizer → downstream) and its loss.
Batches are dicts whose "ids" list gives the batch size. Imports no torch at module level.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator, Protocol, runtime_checkable

if TYPE_CHECKING:
    import torch


@runtime_checkable
class Task(Protocol):
    """forward(batch) is the train step; test_step(batch) gives what evaluation needs."""

    def forward(self, batch: dict) -> dict[str, Any]:
        """{"loss": scalar tensor, ...}; other scalar entries are logged as training metrics."""

    def test_step(self, batch: dict) -> dict[str, Any]:
        """Outputs for evaluation (embeddings, logits, log-probs, ...) with the batch's "ids"."""

    def parameters(self) -> Iterator["torch.nn.Parameter"]: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> Any: ...
