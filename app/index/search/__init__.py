"""A :class:`~app.dicom.query.Query` compiled to SQL over the index (DESIGN.md §6).

One module per concept:

- :mod:`~app.index.search.binder`: a statement's values (always bound parameters, never SQL
  text) and its shape;
- :mod:`~app.index.search.predicates`: matching keys -> SQL conditions (wildcards, ranges,
  fuzzy names, multi-valued keys, ModalitiesInStudy, path UIDs, a scoped grant);
- :mod:`~app.index.search.plan`: the page statement (joins, stable order, the study page's
  index-ordered branches) and the count statement;
- :mod:`~app.index.search.statements`: the statement cache (compiled once per query shape);
- :mod:`~app.index.search.hits`: :func:`search`, one page of :class:`Hit` and its total.
"""

from app.index.search.hits import Hit, PatientPart, SeriesPart, StudyPart, search
from app.index.search.plan import count_statement, page_statement
from app.index.search.predicates import conditions, glob_pattern, like_pattern
from app.index.search.statements import STATEMENTS, StatementCache

__all__ = [
    "STATEMENTS",
    "Hit",
    "PatientPart",
    "SeriesPart",
    "StatementCache",
    "StudyPart",
    "conditions",
    "count_statement",
    "glob_pattern",
    "like_pattern",
    "page_statement",
    "search",
]
