"""Properties of the Accept parser and the negotiations built on it (app.api.negotiation)."""

from hypothesis import given
from hypothesis import strategies as st

from app.api.negotiation import (
    FRAME_MEDIA_TYPES,
    MediaRange,
    negotiate_bulk,
    negotiate_dicom,
    negotiate_frames,
    negotiate_json,
    parse_accept,
    parse_media_range,
)
from app.api.xml import wants_xml
from app.errors import NotAcceptable
from tests.fuzz.outcome import outcome
from tests.fuzz.strategies import accept_text

token = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-+.", min_size=1, max_size=12)
#: parameter values, quoted when they are not tokens (RFC 9110 §5.6.6)
param_value = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20)
weights = st.integers(min_value=0, max_value=1000).map(lambda n: n / 1000)
syntaxes = st.sampled_from(["1.2.840.10008.1.2.1", "1.2.840.10008.1.2.4.90", "*", "1.2.x", ""])


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@st.composite
def media_ranges(draw: st.DrawFn) -> MediaRange:
    kind = draw(token | st.just("*"))
    subtype = "*" if kind == "*" else draw(token | st.just("*"))
    names = draw(st.lists(token.filter(lambda n: n != "q"), max_size=3, unique=True))
    params = {name: draw(param_value) for name in names}
    return MediaRange(kind, subtype, params, draw(weights))


def _format(r: MediaRange) -> str:
    params = "".join(f"; {name}={_quoted(value)}" for name, value in r.params.items())
    return f"{r.essence}{params}; q={r.q:.3f}"


@given(accept_text)
def test_parse_accept_never_raises(value: str) -> None:
    for r in parse_accept(value):
        assert r.essence == r.essence.lower()
        assert 0.0 <= r.q <= 1.0


@given(st.lists(media_ranges(), max_size=4))
def test_formatted_media_ranges_read_back(ranges: list[MediaRange]) -> None:
    parsed = parse_accept(", ".join(_format(r) for r in ranges))
    expected = [parse_media_range(_format(r)) for r in ranges]
    assert parsed == expected
    for r, back in zip(ranges, parsed, strict=True):
        # legacy names are read as current ones (NEG-13); everything else comes back as written
        assert back.params == r.params
        assert back.q == r.q
        if r.essence not in ("image/x-dicom-rle", "image/x-jls"):
            assert back.essence == r.essence


def _producible(syntax: str | None) -> tuple[int, int]:
    return (0, 0) if syntax == "1.2.840.10008.1.2.4.90" else (2, 1)


@given(st.lists(accept_text, max_size=2), st.none() | accept_text, st.booleans(), st.booleans())
def test_negotiations_answer_or_refuse_with_406(
    query: list[str], header: str | None, single: bool, strict: bool
) -> None:
    calls = [
        lambda: negotiate_dicom(
            query, header, single_part=single, producible=_producible, strict=strict
        ),
        lambda: negotiate_json(query, header, strict=strict),
        lambda: negotiate_bulk(query, header, "application/pdf", strict=strict),
        *(
            lambda stored=stored: negotiate_frames(
                query, header, stored, native=False, decodable=single, strict=strict
            )
            for stored in (*list(FRAME_MEDIA_TYPES)[:3], "1.2.840.10008.1.2.1")
        ),
    ]
    for call in calls:
        result = outcome(call, NotAcceptable)
        if isinstance(result, NotAcceptable):
            assert result.message
    assert wants_xml(header, query) in (True, False)


@given(syntaxes, weights)
def test_a_named_transfer_syntax_is_honoured(syntax: str, q: float) -> None:
    header = f'multipart/related; type="application/dicom"; transfer-syntax={syntax}; q={q}'
    try:
        rep = negotiate_dicom([], header, single_part=False, producible=lambda _s: (1, 0))
    except NotAcceptable:
        assert q == 0 or syntax in ("1.2.x", "")
        return
    assert rep.transfer_syntax == syntax
    assert rep.q == q
