"""Lightbox: a DICOMweb PACS (PS3.18 STOW-RS, QIDO-RS, WADO-RS)."""

__version__ = "0.1.0"
