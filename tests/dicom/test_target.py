"""The resource target (app.dicom.target): one validated value, study down to frames."""

import pytest

from app.dicom.target import Level, Target
from app.errors import BadRequest

STUDY, SERIES, SOP = "1.2.826.0.1.3680043.8.498.1", "1.2.826.0.1.3680043.8.498.2", "1.2.3.4"


@pytest.mark.parametrize(
    ("target", "level", "noun", "path"),
    [
        (Target(STUDY), Level.STUDY, "study", f"studies/{STUDY}"),
        (Target(STUDY, SERIES), Level.SERIES, "series", f"studies/{STUDY}/series/{SERIES}"),
        (
            Target(STUDY, SERIES, SOP),
            Level.INSTANCE,
            "instance",
            f"studies/{STUDY}/series/{SERIES}/instances/{SOP}",
        ),
        (
            Target(STUDY, SERIES, SOP, (3, 1)),
            Level.FRAMES,
            "instance",
            f"studies/{STUDY}/series/{SERIES}/instances/{SOP}/frames/3,1",
        ),
    ],
)
def test_levels(target: Target, level: Level, noun: str, path: str) -> None:
    assert target.level is level
    assert target.noun == noun
    assert str(target) == path


def test_parents_walk_up_to_the_study() -> None:
    frames = Target(STUDY, SERIES, SOP, (2,))
    assert frames.parent == Target(STUDY, SERIES, SOP) == frames.resource
    assert frames.parent.parent == Target(STUDY, SERIES)
    assert Target(STUDY, SERIES).parent == Target(STUDY)
    assert Target(STUDY).parent is None
    assert Target(STUDY, SERIES).resource == Target(STUDY, SERIES)


def test_from_path_parses_the_frame_list() -> None:
    target = Target.from_path(STUDY, SERIES, SOP, "002,10")
    assert target.frames == (2, 10)
    assert target == Target(STUDY, SERIES, SOP, (2, 10))
    assert Target.from_path(STUDY) == Target(STUDY)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((STUDY + "x",), "invalid StudyInstanceUID"),
        ((STUDY, "1..2"), "invalid SeriesInstanceUID"),
        ((STUDY, SERIES, "../x"), "invalid SOPInstanceUID"),
        # the first malformed segment from the top is the one named
        (("x", "y", "z", "0"), "invalid StudyInstanceUID"),
        ((STUDY, SERIES, "z", "0"), "invalid SOPInstanceUID"),
        ((STUDY, SERIES, SOP, "0"), "frame numbers start at 1"),
        ((STUDY, SERIES, SOP, "1,2,1"), "frame 1 is listed twice"),
        ((STUDY, SERIES, SOP, "1;2"), "expected positive integers"),
        ((STUDY, SERIES, SOP, ""), "expected positive integers"),
    ],
)
def test_from_path_refuses_malformed_segments(args: tuple[str, ...], message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        Target.from_path(*args)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sop_uid": SOP}, "SeriesInstanceUID missing"),
        ({"series_uid": SERIES, "frames": (1,)}, "SOPInstanceUID missing"),
        ({"series_uid": SERIES, "sop_uid": SOP, "frames": ()}, "no frame number"),
        ({"series_uid": SERIES, "sop_uid": SOP, "frames": (0,)}, "start at 1"),
        ({"series_uid": SERIES, "sop_uid": SOP, "frames": (4, 4)}, "listed twice"),
    ],
)
def test_hierarchy_and_frames_are_checked(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        Target(STUDY, **kwargs)  # type: ignore[arg-type]


def test_targets_are_values() -> None:
    assert Target(STUDY, SERIES) == Target(STUDY, SERIES)
    assert len({Target(STUDY), Target(STUDY), Target(STUDY, SERIES)}) == 2
    with pytest.raises(AttributeError):
        Target(STUDY).study_uid = SERIES  # type: ignore[misc]
