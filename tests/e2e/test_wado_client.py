"""dicomweb-client's retrieve_study/series/instance against a real server process (TEST-02)."""

from pydicom.uid import generate_uid

from tests.e2e.server import DicomwebServer
from tests.factories import make_dataset


def test_retrieve_with_dicomweb_client(dicomweb_server: DicomwebServer) -> None:
    client = dicomweb_server.client
    study = generate_uid()
    series = [generate_uid(), generate_uid()]
    # sent out of order: series 2 first, instance numbers descending
    datasets = [
        make_dataset(
            StudyInstanceUID=study,
            SeriesInstanceUID=series[s],
            SeriesNumber=s + 1,
            InstanceNumber=n,
        )
        for s in (1, 0)
        for n in (3, 2, 1)
    ]
    result = client.store_instances(datasets)
    assert len(result.ReferencedSOPSequence) == len(datasets)
    by_uid = {ds.SOPInstanceUID: ds for ds in datasets}
    expected = [
        ds.SOPInstanceUID
        for ds in sorted(datasets, key=lambda d: (d.SeriesNumber, d.InstanceNumber))
    ]

    retrieved = client.retrieve_study(study)
    assert [ds.SOPInstanceUID for ds in retrieved] == expected  # WADO-01
    for ds in retrieved:
        original = by_uid[ds.SOPInstanceUID]
        assert ds.PixelData == original.PixelData
        assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
        assert ds.preamble == bytes(128)

    in_series = client.retrieve_series(study, series[1], media_types=(("application/dicom", "*"),))
    assert [ds.SOPInstanceUID for ds in in_series] == expected[3:]

    sop = expected[4]
    instance = client.retrieve_instance(study, series[1], sop)
    assert instance.SOPInstanceUID == sop
    assert instance.PatientName == by_uid[sop].PatientName
    assert instance.PixelData == by_uid[sop].PixelData
