"""Constants of the order book, chosen to equal the FIX values where FIX has one.

Side (54): BUY=1, SELL=2. OrdType (40): MARKET=1, LIMIT=2. TimeInForce (59): DAY=0, GTC=1,
IOC=3, FOK=4. Self-trade prevention modes and statuses are the book's own.
"""

BUY = 1
SELL = 2

MARKET = 1
LIMIT = 2

TIF_DAY = 0
TIF_GTC = 1
TIF_IOC = 3
TIF_FOK = 4

STP_NONE = 0
STP_CANCEL_RESTING = 1
STP_CANCEL_INCOMING = 2
STP_CANCEL_BOTH = 3

# statuses
OK = 0
ERR_QTY = 1  # qty <= 0
ERR_DUPLICATE_ID = 2  # order id already resting
ERR_UNKNOWN_ORDER = 3  # cancel/replace of an id that is not resting
ERR_BAD_ARGUMENT = 4  # bad side / ord_type / tif / stp value

STATUS_NAMES = {
    OK: "OK",
    ERR_QTY: "ERR_QTY",
    ERR_DUPLICATE_ID: "ERR_DUPLICATE_ID",
    ERR_UNKNOWN_ORDER: "ERR_UNKNOWN_ORDER",
    ERR_BAD_ARGUMENT: "ERR_BAD_ARGUMENT",
}

# operation codes of the batch stream (oms_trading.book.batch)
OP_ADD = 1
OP_CANCEL = 2
OP_REPLACE = 3
OP_MASS_CANCEL = 4

__all__ = [
    "BUY", "SELL", "MARKET", "LIMIT", "TIF_DAY", "TIF_GTC", "TIF_IOC", "TIF_FOK",
    "STP_NONE", "STP_CANCEL_RESTING", "STP_CANCEL_INCOMING", "STP_CANCEL_BOTH",
    "OK", "ERR_QTY", "ERR_DUPLICATE_ID", "ERR_UNKNOWN_ORDER", "ERR_BAD_ARGUMENT",
    "STATUS_NAMES", "OP_ADD", "OP_CANCEL", "OP_REPLACE", "OP_MASS_CANCEL",
]
