"""Properties of the Range parser (app.api.ranges, RFC 9110 §14)."""

from functools import partial

from hypothesis import given
from hypothesis import strategies as st

from app.api.ranges import ByteRange, Unsatisfiable, parse_range
from tests.fuzz.outcome import outcome
from tests.fuzz.strategies import range_text

sizes = st.integers(min_value=0, max_value=1 << 40)
digits = st.text(alphabet="0123456789", min_size=1, max_size=24) | st.integers(4200, 6000).map(
    lambda n: "9" * n
)


@given(range_text, sizes, st.none() | st.text(max_size=8))
def test_any_header_is_a_range_within_the_value_or_refused(
    header: str, size: int, if_range: str | None
) -> None:
    byte_range = outcome(lambda: parse_range(header, size, if_range=if_range), Unsatisfiable)
    if isinstance(byte_range, Exception):
        assert isinstance(byte_range, Unsatisfiable)
        assert byte_range.size == size
    elif byte_range is not None:
        assert 0 <= byte_range.start <= byte_range.end < size
        assert byte_range.length == byte_range.end - byte_range.start + 1
        assert byte_range.content_range.endswith(f"/{size}")


@given(digits, digits | st.just(""), sizes)
def test_huge_numbers_are_ranges_too(first: str, last: str, size: int) -> None:
    # Python refuses int() of more than 4300 digits: a range must not depend on it
    for header in (f"bytes={first}-{last}", f"bytes=-{first}"):
        byte_range = outcome(partial(parse_range, header, size), Unsatisfiable)
        if isinstance(byte_range, ByteRange):
            assert 0 <= byte_range.start <= byte_range.end < size


@given(
    st.integers(min_value=1, max_value=1 << 40).flatmap(
        lambda size: st.tuples(
            st.just(size),
            st.integers(min_value=0, max_value=size - 1),
            st.integers(min_value=0, max_value=size - 1),
        )
    )
)
def test_a_formatted_range_reads_back(args: tuple[int, int, int]) -> None:
    size, a, b = args
    start, end = min(a, b), max(a, b)
    expected = ByteRange(start, end, size)
    assert parse_range(f"bytes={start}-{end}", size) == expected
    assert parse_range(expected.content_range.replace(" ", "=").split("/")[0], size) == expected
