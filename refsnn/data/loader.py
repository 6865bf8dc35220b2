"""Mini-batches from a `Dataset`, deterministic per (seed, epoch).

Resuming (the epoch-based scheme, no hidden RNG state)
-------------------------------------------------------
The loader keeps no generator between epochs. Everything random in epoch e is
a pure function of ``(seed, e)``:

    order of epoch e      = np.random.default_rng(seed + e).permutation(N)     (if shuffle)
    augment rng, batch k  = np.random.default_rng(SeedSequence(seed + e, spawn_key=(k,)))
                          (the same stream as np.random.SeedSequence(seed + e).spawn(k + 1)[k])

so a checkpoint only needs ``(seed, epoch, next batch index)``: call
``loader.set_epoch(epoch)`` and iterate ``loader.batches(start=k)`` to get
bit-identical batches k, k+1, ... of that epoch. The epoch is never advanced
implicitly: call ``set_epoch`` before every epoch, otherwise every epoch sees
the order of the same epoch.
"""

from __future__ import annotations

from typing import Iterator, Optional, Tuple, Union

import numpy as np

from .dataset import Augment, Dataset, check_int


class DataLoader:
    """Iterate a `Dataset` in batches of ``(x_batch, y_batch)`` ndarrays.

    Parameters
    ----------
    dataset : the `Dataset`.
    batch_size : int >= 1.
    shuffle : permute the samples each epoch (see module docstring).
    seed : int >= 0, base seed of the order and of the augmentation.
    drop_last : drop the final batch if it has fewer than ``batch_size`` samples.
    augment : None (default) uses ``dataset.augment``; False disables
        augmentation; a callable ``augment(x_batch, rng)`` overrides the dataset's.

    Batches are copies: changing them never changes the dataset.
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
        augment: Union[None, bool, Augment] = None,
    ):
        if not isinstance(dataset, Dataset):
            raise TypeError(f"dataset must be a refsnn.data.Dataset, got {type(dataset).__name__}")
        self.dataset = dataset
        self.batch_size = check_int("batch_size", batch_size, 1)
        for flag_name, flag in (("shuffle", shuffle), ("drop_last", drop_last)):
            if not isinstance(flag, (bool, np.bool_)):
                raise TypeError(f"{flag_name}={flag!r} must be a bool (True or False)")
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.seed = check_int("seed", seed, 0)
        if augment is None:
            self.augment: Optional[Augment] = dataset.augment
        elif augment is False:
            self.augment = None
        elif augment is True:
            raise ValueError("augment=True is ambiguous; pass None (use dataset.augment), False, or a callable")
        elif callable(augment):
            self.augment = augment
        else:
            raise TypeError(f"augment={augment!r} must be None, False, or a callable (x_batch, rng) -> x_batch")
        self._epoch = 0

    @property
    def epoch(self) -> int:
        return self._epoch

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose order and augmentation the next iteration uses."""
        self._epoch = check_int("epoch", epoch, 0)

    def __len__(self) -> int:
        n, b = len(self.dataset), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def order(self) -> np.ndarray:
        """Sample indices of the current epoch, in the order they are served."""
        n = len(self.dataset)
        if not self.shuffle:
            return np.arange(n)
        return np.random.default_rng(self.seed + self._epoch).permutation(n)

    def augment_rng(self, batch_index: int) -> np.random.Generator:
        """The Generator handed to ``augment`` for batch ``batch_index`` of the current epoch."""
        ss = np.random.SeedSequence(self.seed + self._epoch, spawn_key=(int(batch_index),))
        return np.random.default_rng(ss)

    def batches(self, start: int = 0) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
        """Batches ``start, start+1, ...`` of the current epoch (for mid-epoch resume)."""
        start = check_int("start", start, 0)
        if start > len(self):
            raise ValueError(f"start={start} is out of range; allowed: 0 <= start <= {len(self)}")
        order = self.order()
        x, y, b = self.dataset.x, self.dataset.y, self.batch_size
        for k in range(start, len(self)):
            idx = order[k * b : (k + 1) * b]
            xb, yb = x[idx], y[idx]  # fancy indexing: copies
            if self.augment is not None:
                out = self.augment(xb, self.augment_rng(k))
                if not isinstance(out, np.ndarray) or out.shape != xb.shape or out.dtype != xb.dtype:
                    raise ValueError(
                        f"augment {self.augment!r} returned {getattr(out, 'dtype', type(out).__name__)} "
                        f"{getattr(out, 'shape', '')}; expected {xb.dtype} {xb.shape}"
                    )
                xb = out
            yield xb, yb

    def __iter__(self) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
        return self.batches(0)

    def __repr__(self) -> str:
        return (
            f"DataLoader({self.dataset.name!r}, batch_size={self.batch_size}, shuffle={self.shuffle}, "
            f"seed={self.seed}, drop_last={self.drop_last}, epoch={self._epoch}, augment={self.augment!r})"
        )
