"""Cut a stream of sample blocks into fixed-size, possibly overlapping windows.

Drivers deliver blocks of any length (one sample, a frame of 100, a 100k-sample burst);
features want windows of exactly `size` samples starting every `hop` samples. The
windows a stream yields do not depend on how it was cut into blocks.

Window number j (0-based, counted since construction or `reset()`) covers the stream
samples ``[j*hop, j*hop + size)``; the pipeline dates a window from that index.
"""

from __future__ import annotations

import numpy as np


class Windower:
    """Fixed-size windows every `hop` samples over a stream of (k, n_channels) blocks.

    ``hop < size`` overlaps windows, ``hop == size`` tumbles them. The buffer is
    preallocated (2 * size rows) and filled by block copies, so a push costs a few
    array copies per window, never a Python step per sample.

    Parameters
    ----------
    size : int
        Samples per window.
    hop : int
        Samples between the starts of consecutive windows, 1 <= hop <= size.
    n_channels : int
        Columns of every pushed block.

    Examples
    --------
    >>> w = Windower(size=4, hop=2, n_channels=1)
    >>> [win[:, 0].tolist() for win in w.push(np.arange(7.0).reshape(-1, 1))]
    [[0.0, 1.0, 2.0, 3.0], [2.0, 3.0, 4.0, 5.0]]
    >>> [win[:, 0].tolist() for win in w.push(np.array([[7.0]]))]
    [[4.0, 5.0, 6.0, 7.0]]
    """

    def __init__(self, size: int, hop: int, n_channels: int) -> None:
        if size < 1:
            raise ValueError(f"window size must be >= 1 sample, got {size}")
        if hop < 1:
            raise ValueError(f"window hop must be >= 1 sample, got {hop}")
        if hop > size:
            # Samples between windows would be silently dropped: never what a user wants.
            raise ValueError(
                f"window hop ({hop}) must not exceed window size ({size}): "
                "samples between windows would be skipped; use hop <= size"
            )
        if n_channels < 1:
            raise ValueError(f"n_channels must be >= 1, got {n_channels}")
        self.size = size
        self.hop = hop
        self.n_channels = n_channels
        # 2 * size rows: each refill yields at least one window and the tail kept after
        # emitting (always < size rows) moves to the front once per refill, not per window.
        self._buf = np.empty((2 * size, n_channels), dtype=np.float64)
        self._fill = 0
        self._samples_pushed = 0
        self._windows_emitted = 0

    @property
    def samples_pushed(self) -> int:
        """Samples pushed since construction or the last `reset()`."""
        return self._samples_pushed

    @property
    def windows_emitted(self) -> int:
        """Windows returned since construction or the last `reset()`."""
        return self._windows_emitted

    def reset(self) -> None:
        """Forget buffered samples (e.g. after a sensor gap): the next window starts fresh."""
        self._fill = 0
        self._samples_pushed = 0
        self._windows_emitted = 0

    def push(self, samples: np.ndarray) -> list[np.ndarray]:
        """Append samples; return every window they complete, oldest first.

        Parameters
        ----------
        samples : np.ndarray
            Shape (k, n_channels), k >= 0 (a 1-D array is accepted when n_channels == 1).

        Returns
        -------
        list of np.ndarray
            Each (size, n_channels) float64, an independent copy (safe to keep).
        """
        block = np.asarray(samples, dtype=np.float64)
        if block.ndim == 1 and self.n_channels == 1:
            block = block.reshape(-1, 1)
        if block.ndim != 2 or block.shape[1] != self.n_channels:
            raise ValueError(
                f"expected samples of shape (k, {self.n_channels}), got {block.shape}"
            )
        windows: list[np.ndarray] = []
        buf, size, hop = self._buf, self.size, self.hop
        capacity = len(buf)
        pos, k = 0, len(block)
        while pos < k:
            n = min(k - pos, capacity - self._fill)
            buf[self._fill : self._fill + n] = block[pos : pos + n]
            self._fill += n
            pos += n
            if self._fill < size:
                continue
            count = (self._fill - size) // hop + 1
            for start in range(0, count * hop, hop):
                windows.append(buf[start : start + size].copy())
            consumed = count * hop
            keep = self._fill - consumed  # < size by construction of `count`
            buf[:keep] = buf[consumed : self._fill]  # numpy copes with the overlap
            self._fill = keep
        self._samples_pushed += k
        self._windows_emitted += len(windows)
        return windows
