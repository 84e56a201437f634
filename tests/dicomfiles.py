"""
DICOM objects for tests and benchmarks, made with pydicom.

Every object gets fresh UIDs unless given; pixel data is deterministic
noise so files differ.
"""

import os

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
SECONDARY_CAPTURE_STORAGE = "1.2.840.10008.5.1.4.1.1.7"
MULTIFRAME_GRAYSCALE_WORD_SC_STORAGE = "1.2.840.10008.5.1.4.1.1.7.3"


def makeDataset(
    rows=64,
    columns=64,
    frames=1,
    sopClassUID=CT_IMAGE_STORAGE,
    patientName="Doe^John",
    patientID="PID1",
    studyInstanceUID=None,
    seriesInstanceUID=None,
    sopInstanceUID=None,
    modality="CT",
    studyDate="20240102",
    characterSet=None,
    pixelData=None,
):
    """
    A single- or multi-frame 16-bit grayscale image data set.
    """
    ds = Dataset()
    if characterSet:
        ds.SpecificCharacterSet = characterSet
    ds.SOPClassUID = sopClassUID
    ds.SOPInstanceUID = sopInstanceUID or generate_uid()
    ds.StudyDate = studyDate
    ds.StudyTime = "101500"
    ds.AccessionNumber = "ACC1"
    ds.Modality = modality
    ds.PatientName = patientName
    ds.PatientID = patientID
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyInstanceUID = studyInstanceUID or generate_uid()
    ds.SeriesInstanceUID = seriesInstanceUID or generate_uid()
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.Rows = rows
    ds.Columns = columns
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    size = rows * columns * 2 * frames
    ds.PixelData = pixelData if pixelData is not None else _noise(size)
    return ds


def _noise(size):
    block = os.urandom(min(size, 1 << 20))
    return (block * (size // len(block) + 1))[:size]


def writeFile(path, dataset, transferSyntaxUID=ExplicitVRLittleEndian):
    """
    Write C{dataset} as a Part-10 file in C{transferSyntaxUID}.
    """
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = dataset.SOPClassUID
    meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    meta.TransferSyntaxUID = transferSyntaxUID
    dataset.file_meta = meta
    dataset.save_as(path, enforce_file_format=True)
    return path


def encodedDataSet(dataset) -> bytes:
    """
    C{dataset} in explicit VR little endian, as a C-STORE carries it.
    """
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    write_dataset(buffer, dataset)
    return buffer.getvalue()
