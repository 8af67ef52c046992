"""What a training process asks about its place in a multi-process run (used inside ``FinetuneStudent.fit``;
no-ops in a one-process run): is it the main process, let the main process go first, the Trainer callbacks
the ranks need. :mod:`training.distributed` launches the processes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


def _distributed() -> bool:
    """True inside a rank of a multi-process run (its process group is up: :func:`_rank_fit`)."""
    import torch.distributed

    return torch.distributed.is_available() and torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1


def is_main_process() -> bool:
    """True in a one-process run, and on rank 0 of a multi-process one."""
    if not _distributed():
        return True
    import torch.distributed

    return torch.distributed.get_rank() == 0


@contextlib.contextmanager
def main_process_first() -> Iterator[None]:
    """Rank 0 runs the block first (it fills the embedding cache, writes a truncated encoder), then the others."""
    if not _distributed():
        yield
        return
    from accelerate import PartialState

    with PartialState().main_process_first():
        yield


def trainer_callbacks() -> list[Any]:
    """Callbacks a multi-process Trainer needs: every rank starts each epoch with rank 0's torch RNG state, so the
    length-grouped sampler draws the same order everywhere and each rank takes its own share of every batch."""
    if not _distributed():
        return []
    from accelerate.utils import synchronize_rng_states
    from transformers import TrainerCallback

    class SameOrderOnEveryRank(TrainerCallback):
        def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            synchronize_rng_states(["torch"])

    return [SameOrderOnEveryRank()]
