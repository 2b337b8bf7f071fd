import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.windowing import Windower


def stream(n: int, channels: int = 2) -> np.ndarray:
    """Sample i of channel c is i + c / 10: every value says where it came from."""
    return np.arange(n)[:, None] + np.arange(channels)[None, :] / 10.0


def starts(windows: list[np.ndarray]) -> list[int]:
    return [int(w[0, 0]) for w in windows]


def test_overlapping_windows_start_every_hop():
    w = Windower(size=8, hop=3, n_channels=2)
    out = w.push(stream(20))
    assert starts(out) == [0, 3, 6, 9, 12]
    for win in out:
        assert win.shape == (8, 2)
        np.testing.assert_array_equal(win, stream(20)[int(win[0, 0]) : int(win[0, 0]) + 8])


def test_tumbling_windows_do_not_overlap_and_keep_the_remainder():
    w = Windower(size=5, hop=5, n_channels=2)
    assert starts(w.push(stream(12))) == [0, 5]
    # Samples 10, 11 wait in the buffer; 3 more complete the next window.
    out = w.push(stream(15)[12:])
    assert starts(out) == [10]
    np.testing.assert_array_equal(out[0], stream(15)[10:15])


def test_hop_larger_than_size_is_refused_with_a_clear_message():
    with pytest.raises(ValueError, match=r"hop \(6\) must not exceed window size \(4\)"):
        Windower(size=4, hop=6, n_channels=1)


@pytest.mark.parametrize("size,hop,channels", [(0, 1, 1), (4, 0, 1), (4, 2, 0)])
def test_degenerate_parameters_are_refused(size, hop, channels):
    with pytest.raises(ValueError):
        Windower(size, hop, channels)


def test_wrong_channel_count_is_refused():
    with pytest.raises(ValueError, match=r"\(k, 3\)"):
        Windower(4, 2, 3).push(np.zeros((5, 2)))


def test_short_pushes_and_empty_pushes_yield_nothing_until_a_window_is_full():
    w = Windower(size=4, hop=2, n_channels=2)
    assert w.push(np.empty((0, 2))) == []
    assert w.push(stream(3)) == []
    assert starts(w.push(stream(4)[3:])) == [0]


def test_returned_windows_are_copies_not_views_of_the_buffer():
    w = Windower(size=4, hop=2, n_channels=1)
    first = w.push(np.arange(4.0))[0]
    w.push(np.arange(4.0, 100.0))
    np.testing.assert_array_equal(first[:, 0], [0, 1, 2, 3])


def test_reset_forgets_buffered_samples_and_counters():
    w = Windower(size=4, hop=4, n_channels=2)
    w.push(stream(6))
    w.reset()
    assert (w.samples_pushed, w.windows_emitted) == (0, 0)
    out = w.push(stream(4) + 100)
    assert starts(out) == [100]


def test_a_large_block_at_once_gives_every_window_and_counts_them():
    n, size, hop = 100_000, 4096, 1024
    w = Windower(size, hop, n_channels=4)
    out = w.push(stream(n, 4))
    assert len(out) == (n - size) // hop + 1
    assert starts(out) == list(range(0, (len(out) - 1) * hop + 1, hop))
    np.testing.assert_array_equal(out[-1], stream(n, 4)[out[-1][0, 0].astype(int) :][:size])
    assert (w.samples_pushed, w.windows_emitted) == (n, len(out))


@settings(max_examples=60, deadline=None)
@given(
    size=st.integers(1, 9),
    hop_frac=st.floats(0.0, 1.0),
    cuts=st.lists(st.integers(0, 12), max_size=12),
)
def test_windows_do_not_depend_on_how_the_stream_is_cut(size, hop_frac, cuts):
    hop = max(1, round(size * hop_frac))
    data = stream(sum(cuts) + 5, 2)
    whole = Windower(size, hop, 2).push(data)

    pieces, w, pos = [], Windower(size, hop, 2), 0
    for k in cuts + [len(data) - sum(cuts)]:
        pieces += w.push(data[pos : pos + k])
        pos += k

    assert len(pieces) == len(whole)
    for a, b in zip(whole, pieces):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("size,hop", [(1, 1), (4, 1), (4, 3), (5, 5), (7, 4)])
def test_one_sample_pushes_give_the_same_windows_as_one_block(size, hop):
    data = stream(40, 3)
    whole = Windower(size, hop, 3).push(data)
    w = Windower(size, hop, 3)
    singles = [win for i in range(len(data)) for win in w.push(data[i : i + 1])]
    assert len(singles) == len(whole) == (40 - size) // hop + 1
    for a, b in zip(whole, singles):
        np.testing.assert_array_equal(a, b)
