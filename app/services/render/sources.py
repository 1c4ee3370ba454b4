"""The instances of a rendering: their kind, their entity tag, the representative one.

Targets are resolved through the index (:mod:`app.index.rendering`, on the joins of
:mod:`app.index.retrieval`): each instance's blob, content hash (the entity tag and cache key,
REND-09), SOP class (image, SR, PDF) and frame count, with SeriesNumber/InstanceNumber for
THUMB-02.
"""

import hashlib
from collections.abc import Sequence

from app.dicom import render as rendering
from app.dicom.render import ObjectKind
from app.index.rendering import RenderSource

__all__ = ["RenderSource", "kind", "render_etag", "thumbnail_choice"]


def kind(source: RenderSource) -> str:
    """The :class:`~app.dicom.render.ObjectKind` of an indexed instance."""
    return rendering.kind_of(source.sop_class_uid, source.number_of_frames is not None)


def render_etag(sources: Sequence[RenderSource], key: str) -> str:
    """A strong ETag from the instances' content hashes and the normalised parameters.

    >>> from app.index.retrieval import InstanceRef
    >>> s = RenderSource(InstanceRef("1", "2", "3", "k", 1, "1.2"), "ab", "1.2", 1, 1, 1)
    >>> render_etag([s], "p") == render_etag([s], "p") != render_etag([s], "q")
    True
    """
    digest = hashlib.sha256(key.encode("utf-8"))
    for source in sources:
        digest.update(b"\0" + source.sha256.encode("ascii"))
    return f'"{digest.hexdigest()[:32]}"'


def thumbnail_choice(sources: Sequence[RenderSource]) -> tuple[RenderSource, int] | None:
    """THUMB-02: the representative instance and frame of a study, series or instance.

    ``sources`` come in WADO-01 order (SeriesNumber, InstanceNumber). The first series holding
    images is taken, then its middle image by InstanceNumber, then that image's middle frame.
    None when there is no image.

    >>> from app.index.retrieval import InstanceRef
    >>> def s(series, n, frames=1):
    ...     return RenderSource(InstanceRef("1", series, f"{series}.{n}", "k", 1, "1.2"), "h",
    ...                         "1.2.840.10008.5.1.4.1.1.2", frames, int(series), n)
    >>> src, frame = thumbnail_choice([s("1", 1), s("1", 2, 9), s("1", 3), s("2", 1)])
    >>> (src.ref.sop_uid, frame)
    ('1.2', 5)
    """
    images = [s for s in sources if kind(s) == ObjectKind.IMAGE]
    if not images:
        return None
    series = images[0].ref.series_uid
    in_series = [s for s in images if s.ref.series_uid == series]
    chosen = in_series[(len(in_series) - 1) // 2]
    frames = chosen.number_of_frames or 1
    return chosen, (frames + 1) // 2
