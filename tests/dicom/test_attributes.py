"""The level catalog agrees with the PS3.6 data dictionary."""

from pydicom.datadict import keyword_for_tag

from app.dicom.attributes import (
    ATTRIBUTES,
    INSTANCE_TAGS,
    SERIES_TAGS,
    STUDY_TAGS,
    Level,
    by_keyword,
    in_study_object,
    level_of,
)


def test_keywords_match_the_dictionary() -> None:
    for attribute in ATTRIBUTES:
        assert keyword_for_tag(attribute.tag) == attribute.keyword


def test_tags_are_unique() -> None:
    assert len({a.tag for a in ATTRIBUTES}) == len(ATTRIBUTES)


def test_levels() -> None:
    assert level_of(0x0020000D) is Level.STUDY
    assert level_of(0x0020000E) is Level.SERIES
    assert level_of(0x00080018) is Level.INSTANCE
    assert level_of(0x00101040) is Level.PATIENT  # PatientAddress, by the group 0010 rule
    assert level_of(0x00100000) is None
    assert by_keyword("RequestAttributesSequence") is not None


def test_encoding_attributes_are_on_every_level() -> None:
    for tags in (STUDY_TAGS, SERIES_TAGS, INSTANCE_TAGS):
        assert {0x00080005, 0x00080201} <= tags
    assert in_study_object(0x00100010)
    assert not in_study_object(0x00080060)
