"""The data position of a training run: :class:`TrainState` (the counters a checkpoint records) and
:func:`iterate_batches`, which walks epochs forever and resumes mid-epoch with ``accelerator.skip_first_batches``."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any


@dataclasses.dataclass
class TrainState:
    """Progress counters saved with every checkpoint (``trainer_state.json``).

    ``step``: optimizer steps done; ``epoch``: current epoch; ``batch_in_epoch``: micro-batches of the current epoch
    this process has consumed (the resume point for ``skip_first_batches``)."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0


def iterate_batches(accelerator, dataloader, state: TrainState) -> Iterator[Any]:
    """Yield the batches of a prepared ``dataloader`` forever, epoch after epoch, from ``state.epoch`` /
    ``state.batch_in_epoch`` on, keeping both counters up to date (so a checkpoint records the data position).

    ``dataloader.set_epoch`` (accelerate) forwards the epoch to the sampler or dataset (:class:`EpochShuffleSampler`,
    :class:`SyntheticClipDataset`); on resume the first epoch skips the batches already consumed, so the resumed
    run sees exactly the batches the uninterrupted run would have seen. A batch whose clips all failed to decode
    (``None`` from :class:`~trajtok_hf.data.VideoTextCollator`) is skipped in one process and an error with several.
    """
    while True:
        dataloader.set_epoch(state.epoch)
        loader = dataloader
        if state.batch_in_epoch:
            loader = accelerator.skip_first_batches(dataloader, state.batch_in_epoch)
        for batch in loader:
            state.batch_in_epoch += 1
            if batch is None:  # every clip of the batch failed to decode (VideoTextCollator returns None)
                if accelerator.num_processes > 1:  # skipping would leave this process out of step with the others
                    raise RuntimeError(
                        f"every clip of batch {state.batch_in_epoch} of epoch {state.epoch} failed to decode on "
                        f"process {accelerator.process_index}; fix or drop the broken videos (see the warnings)"
                    )
                continue
            yield batch
        if state.batch_in_epoch == 0:
            raise RuntimeError("the training dataloader yields no batches (dataset smaller than one global batch?)")
        state.epoch += 1
        state.batch_in_epoch = 0
