import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.lines import ERROR_KINDS, LinesParser


def _stream(rows: np.ndarray, eol: bytes = b"\n") -> bytes:
    return b"".join(",".join(repr(float(v)) for v in row).encode() + eol for row in rows)


def _feed_all(parser: LinesParser, chunks) -> np.ndarray:
    parts = [parser.feed(c) for c in chunks]
    return np.vstack(parts) if parts else np.empty((0, parser.n_fields))


def test_valid_block_parses_every_line_exactly():
    rows = np.random.default_rng(1).normal(size=(500, 4))
    p = LinesParser(4, at_boundary=True)
    out = p.feed(_stream(rows))
    assert out.dtype == np.float64 and out.shape == (500, 4)
    np.testing.assert_array_equal(out, rows)  # repr() round-trips floats exactly
    assert p.lines_ok == 500 and sum(p.errors.values()) == 0


def test_crlf_and_empty_lines_and_spaces():
    p = LinesParser(3, at_boundary=True)
    out = p.feed(b"1,2,3\r\n\r\n\n 4 , 5,6\r\n   \n7,8,9\n")
    np.testing.assert_array_equal(out, [[1, 2, 3], [4, 5, 6], [7, 8, 9]])
    assert sum(p.errors.values()) == 0


def test_crlf_split_between_cr_and_lf():
    p = LinesParser(2, at_boundary=True)
    assert p.feed(b"1,2\r").shape == (0, 2)
    np.testing.assert_array_equal(p.feed(b"\n3,4\r\n"), [[1, 2], [3, 4]])


def test_each_error_kind_is_counted_and_good_lines_survive():
    p = LinesParser(2, max_line=20, at_boundary=True)
    out = p.feed(
        b"1,2\n"
        b"1,2,3\n"  # bad_field_count
        b"4\n"  # bad_field_count
        b"a,2\n"  # not_a_number
        b"1.2.3,4\n"  # not_a_number
        b"\xff\xfe,\x80\n"  # not_a_number (non-ASCII)
        b"nan,1\n"  # non_finite
        b"1,-inf\n"  # non_finite
        b"1e999,0\n"  # non_finite (overflow, no letters: goes through the fast path checks)
        b"1" + b"0" * 30 + b",1\n"  # too_long
        b"3,4\n"
    )
    np.testing.assert_array_equal(out, [[1, 2], [3, 4]])
    assert p.errors == {"bad_field_count": 2, "not_a_number": 3, "non_finite": 3, "too_long": 1}
    assert p.lines_ok == 2


def test_overflow_in_an_otherwise_clean_block_is_dropped_on_the_fast_path():
    p = LinesParser(2, at_boundary=True)
    out = p.feed(b"1,2\n1e999,3\n4,5\n")
    np.testing.assert_array_equal(out, [[1, 2], [4, 5]])
    assert p.errors["non_finite"] == 1


def test_overlong_tail_is_discarded_up_to_next_newline():
    p = LinesParser(2, max_line=16, at_boundary=True)
    assert p.feed(b"1,2\n" + b"9" * 10).tolist() == [[1, 2]]
    for _ in range(100):  # a newline-less flood must not grow the buffer
        assert p.feed(b"9" * 1000).shape == (0, 2)
    assert len(p._tail) <= p.max_line + 1
    assert p.errors["too_long"] == 1  # one over-long line, counted once
    np.testing.assert_array_equal(p.feed(b"99,99\n5,6\n"), [[5, 6]])
    assert p.errors["too_long"] == 1 and p.lines_ok == 2


def test_line_of_exactly_max_line_is_accepted_even_when_its_crlf_arrives_late():
    line = b"1.0000000," + b"2" * 6  # 16 bytes
    p = LinesParser(2, max_line=16, at_boundary=True)
    assert p.feed(line + b"\r").shape == (0, 2)  # tail of max_line + 1 bytes is kept
    np.testing.assert_array_equal(p.feed(b"\n"), [[1.0, 222222.0]])
    assert p.feed(line + b"3\n").shape == (0, 2)  # 17 bytes
    assert p.errors["too_long"] == 1 and p.lines_ok == 1


def test_reset_drops_the_partial_tail():
    p = LinesParser(2, at_boundary=True)
    p.feed(b"1,2\n3,")
    p.reset()  # the new stream starts anywhere: its first line is discarded, never glued to "3,"
    np.testing.assert_array_equal(p.feed(b"4\n5,6\n"), [[5, 6]])
    assert sum(p.errors.values()) == 0 and p.bytes_skipped_at_open == 2


@settings(max_examples=150, deadline=None)
@given(
    rows=st.lists(
        st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=4, max_size=4),
        min_size=0,
        max_size=40,
    ),
    cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=20),
    crlf=st.booleans(),
)
def test_random_splits_give_the_same_rows(rows, cuts, crlf):
    rows = np.array(rows, dtype=np.float64).reshape(-1, 4)
    stream = _stream(rows, b"\r\n" if crlf else b"\n")
    bounds = sorted({0, len(stream), *(c for c in cuts if c < len(stream))})
    chunks = [stream[a:b] for a, b in zip(bounds, bounds[1:])]
    p = LinesParser(4, at_boundary=True)
    np.testing.assert_array_equal(_feed_all(p, chunks), rows)
    assert p.lines_ok == len(rows) and sum(p.errors.values()) == 0


@settings(max_examples=300, deadline=None)
@given(
    chunks=st.lists(
        st.one_of(
            st.binary(max_size=300),
            # bytes that look almost right stress the fast path's checks
            st.text(alphabet="0123456789.,-+eE \r\nnaif", max_size=300).map(str.encode),
        ),
        max_size=10,
    ),
    n_fields=st.integers(min_value=1, max_value=5),
)
def test_random_bytes_never_raise_and_rows_are_finite(chunks, n_fields):
    p = LinesParser(n_fields, max_line=64, at_boundary=True)
    for chunk in chunks:
        out = p.feed(chunk)
        assert out.dtype == np.float64 and out.ndim == 2 and out.shape[1] == n_fields
        assert np.isfinite(out).all()
    assert len(p._tail) <= p.max_line + 1
    assert set(p.errors) == set(ERROR_KINDS)


@settings(max_examples=100, deadline=None)
@given(
    text=st.text(alphabet="0123456789.,-+e \nnaif", max_size=200).map(str.encode),
    cut=st.integers(min_value=0, max_value=200),
)
def test_a_lines_fate_does_not_depend_on_its_block(text, cut):
    whole = LinesParser(2, at_boundary=True)
    a = whole.feed(text + b"\n")
    split = LinesParser(2, at_boundary=True)
    b = _feed_all(split, [text[:cut], text[cut:] + b"\n"])
    line_by_line = LinesParser(2, at_boundary=True)
    c = _feed_all(line_by_line, [line + b"\n" for line in text.split(b"\n")])
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    assert whole.errors == split.errors == line_by_line.errors
