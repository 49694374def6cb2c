"""Hooks for tests only."""

from normlab.train.hooks import ORDER_CHECKPOINT, Hook


class StopAfter(Hook):
    """Raise KeyboardInterrupt after epoch `epoch`'s checkpoint is written, as Ctrl-C would
    between epochs (for tests of --resume)."""

    order = ORDER_CHECKPOINT + 1

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_epoch_end(self, loop, row: dict) -> None:
        if loop.epoch == self.epoch:
            raise KeyboardInterrupt
