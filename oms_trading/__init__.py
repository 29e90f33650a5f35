"""oms_trading: a low-latency securities order management system."""

__version__ = "0.1.0"

LOG_FORMAT = "%(asctime)s.%(msecs)03dZ %(levelname)s %(name)s: %(message)s"
LOG_DATEFMT = "%Y-%m-%dT%H:%M:%S"


def configure_logging(level: int, stream=None) -> None:
    """Log lines stamped in UTC, marked as such (``2026-11-26T14:39:13.554Z``): the journal, FIX
    and the end of day are UTC, and a host whose zone is not UTC (TZ, /etc/localtime) gave
    local times with no zone, an hour or more off from the audit trail they are read beside."""
    import logging
    import time
    formatter = logging.Formatter(LOG_FORMAT, LOG_DATEFMT)
    formatter.converter = time.gmtime
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    logging.basicConfig(level=level, handlers=[handler])
