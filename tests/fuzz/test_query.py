"""Properties of the QIDO-RS parameter parser (app.dicom.query.parse_qido)."""

from hypothesis import given
from hypothesis import strategies as st

from app.dicom.query import KEYS, Query, Resource, parse_qido
from app.errors import BadRequest
from tests.fuzz.outcome import outcome

names = st.sampled_from(
    [
        *KEYS,
        *(f"{k.tag:08X}" for k in KEYS.values()),
        "limit",
        "offset",
        "fuzzymatching",
        "includefield",
        "emptyvaluematching",
        "PatientAge",
        "00100010.00100020",
    ]
) | st.text(max_size=12)
#: values in the shapes the VRs take, and anything
values = st.one_of(
    st.text(alphabet="0123456789-.*?,\\^= +", max_size=24),
    st.sampled_from(["", "*", "true", "false", "all", "20240101-20240131", "1.2.3,1.2.4", "CT"]),
    st.text(max_size=24),
    st.integers(min_value=17_000, max_value=17_500).map(lambda n: "1" * n),
)


@given(
    st.lists(st.tuples(names, values), max_size=6),
    st.sampled_from(list(Resource)),
)
def test_any_parameters_give_a_query_or_a_400(
    params: list[tuple[str, str]], resource: Resource
) -> None:
    query = outcome(lambda: parse_qido(params, resource=resource), BadRequest)
    if isinstance(query, BadRequest):
        assert query.message
    else:
        assert isinstance(query, Query)
        assert query.offset >= 0
        assert query.limit is None or query.limit >= 0
