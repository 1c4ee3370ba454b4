"""Which resource a request names: a study, a series, an instance, or frames of one.

Retrieve (PS3.18 §10.4), rendering (§10.4.1.1.3), search under a path (§10.6.1.2), delete and
the DIMSE retrieves all name their resource by the UIDs of its hierarchy, and WADO-RS frames by
a frame list (§10.4.1.1.4). :class:`Target` carries them as one value, checked once when it is
built: every UID (PS3.5 §9.1; GEN-02, :class:`~app.errors.BadRequest` when malformed), the
hierarchy (no instance without its series), and the frame numbers (positive, each once, FRM-01).
Its :attr:`~Target.level` and :attr:`~Target.parent` are derived, never passed around.

The model is dicomweb-client's ``URI``: a ``URIType`` of SERVICE, STUDY, SERIES, INSTANCE or
FRAME and a ``parent`` one level up. The service root is not a target here (a search of the whole
archive names no resource), so a study has no parent.

>>> target = Target.from_path("1.2.3", "1.2.3.4", "1.2.3.4.5", "2,1")
>>> target.level, target.frames
(<Level.FRAMES: 'frames'>, (2, 1))
>>> target.parent.level, target.parent.parent.level, target.parent.parent.parent.parent
(<Level.INSTANCE: 'instance'>, <Level.SERIES: 'series'>, None)
>>> str(target.parent.parent)
'studies/1.2.3/series/1.2.3.4'
"""

import enum
from dataclasses import dataclass

from app.dicom.frames import check_frame_numbers, parse_frame_numbers
from app.dicom.uids import validate_uid
from app.errors import BadRequest

__all__ = ["Level", "Target"]


class Level(enum.Enum):
    """The level of a :class:`Target`, from the top (dicomweb-client's ``URIType``)."""

    STUDY = "study"
    SERIES = "series"
    INSTANCE = "instance"
    FRAMES = "frames"


@dataclass(frozen=True, slots=True)
class Target:
    """A study, series, instance or frames of an instance, validated (module docstring).

    Build one from trusted values (the index's) with the constructor or from a request path
    with :meth:`from_path`; either way the UIDs and frame numbers are checked.

    >>> Target("1.2.3", sop_uid="1.2.3.4")
    Traceback (most recent call last):
    ...
    app.errors.BadRequest: an instance is named under its series: SeriesInstanceUID missing
    >>> Target("1.2.3", "1.2.x")
    Traceback (most recent call last):
    ...
    app.errors.BadRequest: invalid SeriesInstanceUID
    """

    study_uid: str
    series_uid: str | None = None
    sop_uid: str | None = None
    #: frame numbers (1-based) in the order asked; None unless the target is frames
    frames: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        validate_uid(self.study_uid, "StudyInstanceUID")
        if self.series_uid is not None:
            validate_uid(self.series_uid, "SeriesInstanceUID")
        if self.sop_uid is not None:
            if self.series_uid is None:
                raise BadRequest("an instance is named under its series: SeriesInstanceUID missing")
            validate_uid(self.sop_uid, "SOPInstanceUID")
        if self.frames is not None:
            if self.sop_uid is None:
                raise BadRequest("frames are named under their instance: SOPInstanceUID missing")
            check_frame_numbers(self.frames)

    @classmethod
    def from_path(
        cls,
        study: str,
        series: str | None = None,
        instance: str | None = None,
        frames: str | None = None,
    ) -> "Target":
        """The target of a URL path's segments; ``frames`` is a frame list (``"1,3"``, FRM-01).

        The UIDs are checked from the top, then the frame list, so the first malformed segment
        is the one the 400 names.

        >>> Target.from_path("1.2.3", "1.2.3.4").level
        <Level.SERIES: 'series'>
        >>> Target.from_path("1.2.3", "1.2.3.4", "1.2.3.4.5", "0")
        Traceback (most recent call last):
        ...
        app.errors.BadRequest: invalid frame list: frame numbers start at 1
        """
        numbers = None
        if frames is not None:
            # the UIDs first: a malformed UID is reported before a malformed frame list
            cls(study, series, instance)
            numbers = tuple(parse_frame_numbers(frames))
        return cls(study, series, instance, numbers)

    @property
    def level(self) -> Level:
        """How deep the target is: study, series, instance or frames."""
        if self.frames is not None:
            return Level.FRAMES
        if self.sop_uid is not None:
            return Level.INSTANCE
        if self.series_uid is not None:
            return Level.SERIES
        return Level.STUDY

    @property
    def parent(self) -> "Target | None":
        """The target one level up (frames: their instance); None for a study."""
        level = self.level
        if level is Level.FRAMES:
            return self.resource
        if level is Level.INSTANCE:
            return Target(self.study_uid, self.series_uid)
        if level is Level.SERIES:
            return Target(self.study_uid)
        return None

    @property
    def resource(self) -> "Target":
        """The study, series or instance the target is or is in (frames: their instance)."""
        if self.frames is None:
            return self
        return Target(self.study_uid, self.series_uid, self.sop_uid)

    @property
    def noun(self) -> str:
        """What the target's :attr:`resource` is, for messages: study, series or instance.

        >>> Target("1.2.3", "1.2.3.4", "1.2.3.4.5", (1,)).noun
        'instance'
        """
        return self.resource.level.value

    def __str__(self) -> str:
        """The target's path below the service root (``studies/{study}/series/{series}...``)."""
        path = f"studies/{self.study_uid}"
        if self.series_uid is not None:
            path += f"/series/{self.series_uid}"
        if self.sop_uid is not None:
            path += f"/instances/{self.sop_uid}"
        if self.frames is not None:
            path += "/frames/" + ",".join(str(n) for n in self.frames)
        return path
