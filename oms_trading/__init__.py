"""oms_trading: a low-latency securities order management system."""

__version__ = "0.1.0"
