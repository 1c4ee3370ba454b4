"""Logging of the libraries Lightbox drives: their expected failures without tracebacks.

pydicom's and pylibjpeg's codec dispatchers log every plugin's failure with ``logger.exception``
(ERROR, with a traceback) and then either try the next plugin or raise an exception of their
own. Lightbox catches that exception and answers with a specific error (a corrupt or
undecodable frame is a 406 with its reason, :mod:`app.dicom.transcode`), so the ERROR record is
a second, misleading report of a refusal that was answered correctly. :func:`quiet_codec_logs`
turns those records into one DEBUG line each (the plugin's message, no traceback).
"""

import logging
from typing import Final

__all__ = ["CODEC_LOGGERS", "quiet_codec_logs"]

#: the loggers of the codec dispatchers that log each plugin failure with its traceback (a
#: logger's filters see only the records logged on it, so they are named one by one; a test
#: decoding a corrupt frame fails if the libraries move them)
CODEC_LOGGERS: Final = (
    "pydicom.pixels.decoders.base",
    "pydicom.pixels.encoders.base",
    "pylibjpeg.utils",
)


class _PluginFailure(logging.Filter):
    """Demote a logged exception to a one-line DEBUG record (dropped unless DEBUG is on)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info is None or record.levelno < logging.ERROR:
            return True
        exc = record.exc_info[1]
        record.msg = "codec plugin failed: %s: %s"
        record.args = (type(exc).__name__, exc)
        record.exc_info = None
        record.exc_text = None
        record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


_FILTER: Final = _PluginFailure()


def quiet_codec_logs() -> None:
    """Install the filter on :data:`CODEC_LOGGERS` (idempotent)."""
    for name in CODEC_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
