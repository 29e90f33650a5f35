"""Compact FIX 4.2 / 4.4 data dictionary and session-level validator.

Covers the standard header and trailer and the messages this acceptor handles:
A 0 1 2 3 4 5 j D F G H q (incoming) and 8 9 j r (outgoing). Written from the FIX 4.2 and
FIX 4.4 specifications (field types, message layouts, required flags, enumerations), with the
validation order QuickFIX/J uses (header order, then tags, then required fields, then values,
then repeating groups).

``validate(msg, begin_string) -> Problem | None`` returns the first problem as a
SessionRejectReason (373) with RefTagID (371) and a readable text, or a ``business=True``
Problem for a defined-but-unsupported application MsgType (answer with
BusinessMessageReject j, BusinessRejectReason 380=3). CompID (9) and SendingTime accuracy
(10) are left to the session.

Profile (deviations from the bare specification, on purpose):
* OrderQty (38) and Symbol (55) are required in D and G for both versions (the specification
  makes them conditionally required: OrderQty or CashOrderQty; Symbol or SecurityID). We
  trade by symbol and quantity only; asking for them here gives the counterparty a precise
  Reject instead of a later business reject.
* OrderMassCancelRequest (q) was introduced in FIX 4.3; it is accepted on FIX 4.2 sessions
  too, with the FIX 4.4 layout (common venue extension).
* Username (553) and Password (554) are FIX 4.3+ Logon fields; they are accepted in FIX 4.2
  Logons too, as many 4.2 counterparties send them there and a 4.2 session configured with a
  password has no other field to send it in.
* Tags >= 5000 (user-defined range) are allowed in any message and not type-checked.
"""

from __future__ import annotations

from itertools import islice
from typing import NamedTuple

from oms_trading.fix.timefmt import is_fix_timestamp, parse_fix_timestamp

__all__ = [
    "Problem",
    "validate",
    "FIELDS",
    "field_name",
    "field_type",
    "MESSAGES",
    "SUPPORTED_IN",
    "GROUP_MEMBERS_ANY_VERSION",
    "USER_DEFINED_MIN",
]

USER_DEFINED_MIN = 5000

# --------------------------------------------------------------------------------------
# Fields: tag name TYPE. One name per tag (the FIX 4.4 name; 4.2 names in comments where
# they differ).

_FIELD_TABLE = """
1 Account STRING
6 AvgPx PRICE
7 BeginSeqNo SEQNUM
8 BeginString STRING
9 BodyLength LENGTH
10 CheckSum STRING
11 ClOrdID STRING
12 Commission AMT
13 CommType CHAR
14 CumQty QTY
15 Currency CURRENCY
16 EndSeqNo SEQNUM
17 ExecID STRING
18 ExecInst MULTIPLEVALUESTRING
19 ExecRefID STRING
20 ExecTransType CHAR
21 HandlInst CHAR
22 SecurityIDSource STRING
23 IOIID STRING
30 LastMkt EXCHANGE
31 LastPx PRICE
32 LastQty QTY
34 MsgSeqNum SEQNUM
35 MsgType STRING
36 NewSeqNo SEQNUM
37 OrderID STRING
38 OrderQty QTY
39 OrdStatus CHAR
40 OrdType CHAR
41 OrigClOrdID STRING
43 PossDupFlag BOOLEAN
44 Price PRICE
45 RefSeqNum SEQNUM
47 Rule80A CHAR
48 SecurityID STRING
49 SenderCompID STRING
50 SenderSubID STRING
52 SendingTime UTCTIMESTAMP
54 Side CHAR
55 Symbol STRING
56 TargetCompID STRING
57 TargetSubID STRING
58 Text STRING
59 TimeInForce CHAR
60 TransactTime UTCTIMESTAMP
63 SettlType CHAR
64 SettlDate LOCALMKTDATE
65 SymbolSfx STRING
66 ListID STRING
70 AllocID STRING
75 TradeDate LOCALMKTDATE
76 ExecBroker STRING
77 PositionEffect CHAR
78 NoAllocs NUMINGROUP
79 AllocAccount STRING
80 AllocQty QTY
81 ProcessCode CHAR
89 Signature DATA
90 SecureDataLen LENGTH
91 SecureData DATA
93 SignatureLength LENGTH
95 RawDataLength LENGTH
96 RawData DATA
97 PossResend BOOLEAN
98 EncryptMethod INT
99 StopPx PRICE
100 ExDestination EXCHANGE
102 CxlRejReason INT
103 OrdRejReason INT
106 Issuer STRING
107 SecurityDesc STRING
108 HeartBtInt INT
109 ClientID STRING
110 MinQty QTY
111 MaxFloor QTY
112 TestReqID STRING
114 LocateReqd BOOLEAN
115 OnBehalfOfCompID STRING
116 OnBehalfOfSubID STRING
117 QuoteID STRING
120 SettlCurrency CURRENCY
121 ForexReq BOOLEAN
122 OrigSendingTime UTCTIMESTAMP
123 GapFillFlag BOOLEAN
126 ExpireTime UTCTIMESTAMP
128 DeliverToCompID STRING
129 DeliverToSubID STRING
136 NoMiscFees NUMINGROUP
137 MiscFeeAmt AMT
138 MiscFeeCurr CURRENCY
139 MiscFeeType CHAR
140 PrevClosePx PRICE
141 ResetSeqNumFlag BOOLEAN
142 SenderLocationID STRING
143 TargetLocationID STRING
144 OnBehalfOfLocationID STRING
145 DeliverToLocationID STRING
150 ExecType CHAR
151 LeavesQty QTY
152 CashOrderQty QTY
167 SecurityType STRING
168 EffectiveTime UTCTIMESTAMP
192 OrderQty2 QTY
193 SettlDate2 LOCALMKTDATE
200 MaturityMonthYear MONTHYEAR
201 PutOrCall INT
202 StrikePrice PRICE
203 CoveredOrUncovered INT
204 CustomerOrFirm INT
205 MaturityDay DAYOFMONTH
206 OptAttribute CHAR
207 SecurityExchange EXCHANGE
210 MaxShow QTY
211 PegOffsetValue FLOAT
212 XmlDataLen LENGTH
213 XmlData DATA
218 Spread PRICEOFFSET
220 BenchmarkCurveCurrency CURRENCY
221 BenchmarkCurveName STRING
222 BenchmarkCurvePoint STRING
223 CouponRate PERCENTAGE
224 CouponPaymentDate LOCALMKTDATE
225 IssueDate LOCALMKTDATE
226 RepurchaseTerm INT
227 RepurchaseRate PERCENTAGE
228 Factor FLOAT
229 TradeOriginationDate LOCALMKTDATE
231 ContractMultiplier FLOAT
232 NoStipulations NUMINGROUP
233 StipulationType STRING
234 StipulationValue STRING
235 YieldType STRING
236 Yield PERCENTAGE
239 RepoCollateralSecurityType STRING
240 RedemptionDate LOCALMKTDATE
255 CreditRating STRING
305 UnderlyingSecurityIDSource STRING
306 UnderlyingIssuer STRING
307 UnderlyingSecurityDesc STRING
308 UnderlyingSecurityExchange EXCHANGE
309 UnderlyingSecurityID STRING
310 UnderlyingSecurityType STRING
311 UnderlyingSymbol STRING
312 UnderlyingSymbolSfx STRING
313 UnderlyingMaturityMonthYear MONTHYEAR
316 UnderlyingStrikePrice PRICE
336 TradingSessionID STRING
337 ContraTrader STRING
347 MessageEncoding STRING
348 EncodedIssuerLen LENGTH
349 EncodedIssuer DATA
350 EncodedSecurityDescLen LENGTH
351 EncodedSecurityDesc DATA
354 EncodedTextLen LENGTH
355 EncodedText DATA
369 LastMsgSeqNumProcessed SEQNUM
370 OnBehalfOfSendingTime UTCTIMESTAMP
371 RefTagID INT
372 RefMsgType STRING
373 SessionRejectReason INT
375 ContraBroker STRING
376 ComplianceID STRING
377 SolicitedFlag BOOLEAN
379 BusinessRejectRefID STRING
380 BusinessRejectReason INT
382 NoContraBrokers NUMINGROUP
383 MaxMessageSize LENGTH
384 NoMsgTypes NUMINGROUP
385 MsgDirection CHAR
386 NoTradingSessions NUMINGROUP
388 DiscretionInst CHAR
389 DiscretionOffsetValue FLOAT
423 PriceType INT
427 GTBookingInst INT
432 ExpireDate LOCALMKTDATE
434 CxlRejResponseTo CHAR
437 ContraTradeQty QTY
438 ContraTradeTime UTCTIMESTAMP
439 ClearingFirm STRING
440 ClearingAccount STRING
447 PartyIDSource CHAR
448 PartyID STRING
452 PartyRole INT
453 NoPartyIDs NUMINGROUP
454 NoSecurityAltID NUMINGROUP
455 SecurityAltID STRING
456 SecurityAltIDSource STRING
457 NoUnderlyingSecurityAltID NUMINGROUP
458 UnderlyingSecurityAltID STRING
459 UnderlyingSecurityAltIDSource STRING
460 Product INT
461 CFICode STRING
462 UnderlyingProduct INT
463 UnderlyingCFICode STRING
464 TestMessageIndicator BOOLEAN
467 IndividualAllocID STRING
468 RoundingDirection CHAR
469 RoundingModulus FLOAT
470 CountryOfIssue COUNTRY
471 StateOrProvinceOfIssue STRING
472 LocaleOfIssue STRING
479 CommCurrency CURRENCY
480 CancellationRights CHAR
481 MoneyLaunderingStatus CHAR
494 Designation STRING
497 FundRenewWaiv CHAR
513 RegistID STRING
516 OrderPercent PERCENTAGE
523 PartySubID STRING
524 NestedPartyID STRING
525 NestedPartyIDSource CHAR
526 SecondaryClOrdID STRING
527 SecondaryExecID STRING
528 OrderCapacity CHAR
529 OrderRestrictions MULTIPLEVALUESTRING
530 MassCancelRequestType CHAR
531 MassCancelResponse CHAR
532 MassCancelRejectReason CHAR
533 TotalAffectedOrders INT
534 NoAffectedOrders NUMINGROUP
535 AffectedOrderID STRING
536 AffectedSecondaryOrderID STRING
538 NestedPartyRole INT
539 NoNestedPartyIDs NUMINGROUP
541 MaturityDate LOCALMKTDATE
542 UnderlyingMaturityDate LOCALMKTDATE
543 InstrRegistry STRING
544 CashMargin CHAR
545 NestedPartySubID STRING
553 Username STRING
554 Password STRING
581 AccountType INT
582 CustOrderCapacity INT
583 ClOrdLinkID STRING
586 OrigOrdModTime UTCTIMESTAMP
589 DayBookingInst CHAR
590 BookingUnit CHAR
591 PreallocMethod CHAR
625 TradingSessionSubID STRING
627 NoHops NUMINGROUP
628 HopCompID STRING
629 HopSendingTime UTCTIMESTAMP
630 HopRefID SEQNUM
635 ClearingFeeIndicator STRING
636 WorkingIndicator BOOLEAN
640 Price2 PRICE
655 ContraLegRefID STRING
660 AcctIDSource INT
661 AllocAcctIDSource INT
662 BenchmarkPrice PRICE
663 BenchmarkPriceType INT
667 ContractSettlMonth MONTHYEAR
691 Pool STRING
699 BenchmarkSecurityID STRING
711 NoUnderlyings NUMINGROUP
736 AllocSettlCurrency CURRENCY
761 BenchmarkSecurityIDSource STRING
762 SecuritySubType STRING
775 BookingType INT
788 TerminationType INT
789 NextExpectedMsgSeqNum SEQNUM
790 OrdStatusReqID STRING
802 NoPartySubIDs NUMINGROUP
803 PartySubIDType INT
804 NoNestedPartySubIDs NUMINGROUP
805 NestedPartySubIDType INT
810 UnderlyingPx PRICE
835 PegMoveType INT
836 PegOffsetType INT
837 PegLimitType INT
838 PegRoundDirection INT
840 PegScope INT
841 DiscretionMoveType INT
842 DiscretionOffsetType INT
843 DiscretionLimitType INT
844 DiscretionRoundDirection INT
846 DiscretionScope INT
847 TargetStrategy INT
848 TargetStrategyParameters STRING
849 ParticipationRate PERCENTAGE
854 QtyType INT
864 NoEvents NUMINGROUP
865 EventType INT
866 EventDate LOCALMKTDATE
867 EventPx PRICE
868 EventText STRING
873 DatedDate LOCALMKTDATE
874 InterestAccrualDate LOCALMKTDATE
875 CPProgram INT
876 CPRegType STRING
879 UnderlyingQty QTY
898 MarginRatio PERCENTAGE
913 AgreementDesc STRING
914 AgreementID STRING
915 AgreementDate LOCALMKTDATE
916 StartDate LOCALMKTDATE
917 EndDate LOCALMKTDATE
918 AgreementCurrency CURRENCY
919 DeliveryType INT
947 StrikeCurrency CURRENCY
"""

FIELDS: dict[int, tuple[str, str]] = {}
for _line in _FIELD_TABLE.strip().splitlines():
    _t, _n, _ty = _line.split()
    FIELDS[int(_t)] = (_n, _ty)
del _line, _t, _n, _ty

# Names that differ in FIX 4.2 (for texts only).
_NAMES_42 = {22: "IDSource", 32: "LastShares", 63: "SettlmntTyp", 64: "FutSettDate",
             80: "AllocShares", 211: "PegDifference", 389: "DiscretionOffset"}


def field_name(tag: int, begin_string: bytes = b"FIX.4.4") -> str:
    if begin_string == b"FIX.4.2" and tag in _NAMES_42:
        return _NAMES_42[tag]
    f = FIELDS.get(tag)
    return f[0] if f else "tag %d" % tag


def field_type(tag: int) -> str | None:
    f = FIELDS.get(tag)
    return f[1] if f else None


def _tn(tag: int, bs: bytes) -> str:
    return "%d (%s)" % (tag, field_name(tag, bs))


# --------------------------------------------------------------------------------------
# Layouts. A layout is a list of items: an int tag, ("*", tag) for a required tag, or a
# group ("G", count_tag, [items...]); the first tag of a group's items is its delimiter.
# The field lists of the incoming application messages follow the specification's message
# layouts (checked against QuickFIX/J's FIX42.xml / FIX44.xml): a standard optional field
# missing here would refuse a valid request with 373=2. UnderlyingInstrument is a subset.

def R(tag):  # noqa: N802 - short on purpose: "required"
    return ("*", tag)


def G(count, *items):  # noqa: N802
    return ("G", count, list(items))


HEADER = [R(8), R(9), R(35), R(49), R(56), 115, 128, 90, 91, R(34), 50, 142, 57, 143, 116,
          144, 129, 145, 43, 97, R(52), 122, 212, 213, 347, 369, 370, G(627, 628, 629, 630)]
TRAILER = [93, 89, R(10)]

_PARTIES = [G(453, 448, 447, 452, G(802, 523, 803))]
_NESTED_PARTIES = [G(539, 524, 525, 538, G(804, 545, 805))]
_INSTRUMENT_44 = [55, 65, 48, 22, G(454, 455, 456), 460, 461, 167, 762, 200, 541, 201, 224,
                  225, 239, 226, 227, 228, 255, 543, 470, 471, 472, 240, 202, 947, 206, 231,
                  223, 207, 106, 348, 349, 107, 350, 351, 691, 667, 875, 876,
                  G(864, 865, 866, 867, 868), 873, 874]
_INSTRUMENT_42 = [55, 65, 48, 22, 167, 200, 205, 201, 202, 206, 231, 223, 207, 106, 348, 349,
                  107, 350, 351]
_UNDERLYINGS_44 = [G(711, 311, 312, 309, 305, G(457, 458, 459), 462, 463, 310, 313, 542, 316,
                     308, 306, 307, 879, 810)]
_UNDERLYING_FLAT_44 = [311, 312, 309, 305, G(457, 458, 459), 462, 463, 310, 313, 542, 316, 308,
                       306, 307, 879, 810]
_FINANCING_44 = [913, 914, 915, 918, 788, 916, 917, 919, 898]  # FinancingDetails component
_STIPULATIONS = [G(232, 233, 234)]
_ORDER_QTY_DATA = [38, 152, 516, 468, 469]
_COMMISSION = [12, 13, 479, 497]
_PEG_44 = [211, 835, 836, 837, 838, 840]
_DISCRETION_44 = [388, 389, 841, 842, 843, 844, 846]
_SPREAD = [218, 220, 221, 222, 662, 663, 699, 761]
_YIELD = [235, 236]
_TEXT = [58, 354, 355]
_ALLOCS_44 = [G(78, 79, 661, 736, 467, *_NESTED_PARTIES, 80)]
_ALLOCS_42 = [G(78, 79, 80)]
_SESSIONS_44 = [G(386, 336, 625)]
_SESSIONS_42 = [G(386, 336)]

_COMMON_SESSION = {
    "A": [R(98), R(108), 95, 96, 141, 383, G(384, 372, 385)],
    "0": [112],
    "1": [R(112)],
    "2": [R(7), R(16)],
    "3": [R(45), 371, 372, 373] + _TEXT,
    "4": [123, R(36)],
    "5": _TEXT,
    "j": [45, R(372), 379, R(380)] + _TEXT,
}

_MSGS_44 = dict(_COMMON_SESSION)
_MSGS_44["A"] = _COMMON_SESSION["A"] + [789, 464, 553, 554]
_MSGS_44["D"] = (
    [R(11), 526, 583] + _PARTIES + [229, 75, 1, 660, 581, 589, 590, 591, 70] + _ALLOCS_44 +
    [63, 64, 544, 635, 21, 18, 110, 111, 100] + _SESSIONS_44 + [81] + _INSTRUMENT_44 + _FINANCING_44 +
    _UNDERLYINGS_44 + [140, R(54), 114, R(60)] + _STIPULATIONS + [854] + _ORDER_QTY_DATA +
    [R(40), 423, 44, 99] + _SPREAD + _YIELD + [15, 376, 377, 23, 117, 59, 168, 432, 126, 427] +
    _COMMISSION + [528, 529, 582, 121, 120, 775] + _TEXT + [193, 192, 640, 77, 203, 210] +
    _PEG_44 + _DISCRETION_44 + [847, 848, 849, 480, 481, 513, 494])
_MSGS_44["F"] = ([R(41), 37, R(11), 526, 583, 66, 586, 1, 660, 581] + _PARTIES + _INSTRUMENT_44 +
                 _FINANCING_44 + _UNDERLYINGS_44 + [R(54), R(60)] + _ORDER_QTY_DATA + [376] + _TEXT)
_MSGS_44["G"] = (
    [37] + _PARTIES + [229, 75, R(41), R(11), 526, 583, 66, 586, 1, 660, 581, 589, 590, 591, 70] +
    _ALLOCS_44 + [63, 64, 544, 635, 21, 18, 110, 111, 100] + _SESSIONS_44 + _INSTRUMENT_44 +
    _FINANCING_44 + _UNDERLYINGS_44 + [R(54), R(60)] + _STIPULATIONS + [854] + _ORDER_QTY_DATA +
    [R(40), 423, 44, 99] + _SPREAD + _YIELD + _PEG_44 + _DISCRETION_44 +
    [847, 848, 849, 376, 377, 15, 59, 168, 432, 126, 427] + _COMMISSION +
    [528, 529, 582, 121, 120, 775] + _TEXT + [193, 192, 640, 77, 203, 210, 114, 480, 481, 513, 494])
_MSGS_44["H"] = ([37, R(11), 526, 583] + _PARTIES + [790, 1, 660] + _INSTRUMENT_44 + _FINANCING_44 +
                 _UNDERLYINGS_44 + [R(54)])
_MSGS_44["q"] = ([R(11), 526, R(530), 336, 625] + _PARTIES + _INSTRUMENT_44 + _UNDERLYING_FLAT_44 +
                 [54, R(60)] + _TEXT)
_MSGS_44["8"] = (
    [R(37), 526, 527, 11, 41, 583, 790] + _PARTIES + [G(382, 375, 337, 437, 438, 655), 66,
     R(17), 19, R(150), R(39), 636, 103, 1, 660, 581, 589] + _INSTRUMENT_44 + _UNDERLYINGS_44 +
    [R(54)] + _STIPULATIONS + _ORDER_QTY_DATA + [40, 423, 44, 99, 59, 168, 432, 126, 18, 528,
     32, 31, 30, 336, 625, R(151), R(14), R(6), 75, R(60), 64, 15, 120] + _COMMISSION +
    [G(136, 137, 138, 139)] + _TEXT)
_MSGS_44["9"] = ([R(37), 526, R(11), 583, R(41), R(39), 636, 66, 1, 660, 581, 60, R(434), 102] + _TEXT)
_MSGS_44["r"] = ([11, 526, R(37), R(530), R(531), 532, 533, G(534, 41, 535, 536), 336, 625] +
                 _PARTIES + _INSTRUMENT_44 + _UNDERLYING_FLAT_44 + [54, 60] + _TEXT)

_MSGS_42 = dict(_COMMON_SESSION)
_MSGS_42["A"] = _COMMON_SESSION["A"] + [553, 554]   # extension: Username/Password (module doc)
_MSGS_42["D"] = (
    [R(11), 109, 76, 1] + _ALLOCS_42 + [63, 64, R(21), 18, 110, 111, 100] + _SESSIONS_42 + [81] +
    _INSTRUMENT_42 + [140, R(54), 114, R(60), 38, 152, R(40), 44, 99, 15, 376, 377, 23, 117, 59,
                      168, 432, 126, 427] + _COMMISSION +
    [47, 121, 120] + _TEXT + [193, 192, 77, 203, 204, 210, 211, 388, 389, 439, 440])
_MSGS_42["F"] = ([R(41), 37, R(11), 66, 1, 109, 76] + _INSTRUMENT_42 +
                 [R(54), R(60), 38, 152, 376, 377] + _TEXT)
_MSGS_42["G"] = (
    [37, 109, 76, R(41), R(11), 66, 1] + _ALLOCS_42 + [63, 64, R(21), 18, 110, 111, 100] +
    _SESSIONS_42 + _INSTRUMENT_42 + [R(54), R(60), 38, 152, R(40), 44, 99, 15, 376, 377, 59,
                                     168, 432, 126, 427] + _COMMISSION +
    [47, 121, 120] + _TEXT + [193, 192, 77, 203, 204, 210, 211, 388, 389, 114, 439, 440])
# Symbol is required in a FIX 4.2 H (the 4.2 ExecutionReport that answers it requires it too)
_MSGS_42["H"] = [37, R(11), 109, 1, 76] + [R(55) if t == 55 else t for t in _INSTRUMENT_42] + [R(54)]
_MSGS_42["q"] = _MSGS_44["q"]  # extension: q is FIX 4.3+, accepted on 4.2 (module doc)
_MSGS_42["8"] = (
    [R(37), 11, 41, 109, G(382, 375, 337, 437, 438), 66, R(17), R(20), 19, R(150), R(39), 103,
     1] + _INSTRUMENT_42 + [R(54), 38, 152, 40, 44, 99, 59, 168, 432, 126, 18, 47, 32, 31, 30,
                            336, R(151), R(14), R(6), 75, 60, 64, 15, 120] + _COMMISSION +
    [G(136, 137, 138, 139)] + _TEXT)
_MSGS_42["9"] = ([R(37), 526, R(11), R(41), R(39), 109, 76, 66, 1, 60, R(434), 102] + _TEXT)
_MSGS_42["r"] = _MSGS_44["r"]

# Our profile (module doc): Symbol and OrderQty required in D and G.
for _m in (_MSGS_44, _MSGS_42):
    for _t in ("D", "G"):
        _m[_t] = [R(x) if x in (38, 55) else x for x in _m[_t]]
del _m, _t

MESSAGES: dict[bytes, dict[bytes, list]] = {
    b"FIX.4.4": {k.encode(): v for k, v in _MSGS_44.items()},
    b"FIX.4.2": {k.encode(): v for k, v in _MSGS_42.items()},
}

# Message types we accept from counterparties (the others in MESSAGES are outgoing).
SUPPORTED_IN = frozenset(x.encode() for x in ("A", "0", "1", "2", "3", "4", "5", "j", "D", "F",
                                              "G", "H", "q"))

# Every MsgType defined by FIX 4.2 / 4.4 (unsupported ones get BusinessMessageReject).
_DEFINED_42 = set("0 1 2 3 4 5 6 7 8 9 A B C D E F G H J K L M N P Q R S T V W X Y Z "
                  "a b c d e f g h i j k l m".split())
_DEFINED_44 = _DEFINED_42 | set("n o p q r s t u v w x y z AA AB AC AD AE AF AG AH AI AJ AK "
                                "AL AM AN AO AP AQ AR AS AT AU AV AW AX AY AZ BA BB BC BD BE "
                                "BF BG BH".split())
DEFINED_MSG_TYPES = {b"FIX.4.2": frozenset(x.encode() for x in _DEFINED_42 | {"q", "r"}),
                     b"FIX.4.4": frozenset(x.encode() for x in _DEFINED_44)}
SESSION_MSG_TYPES = frozenset([b"0", b"1", b"2", b"3", b"4", b"5", b"A"])

# --------------------------------------------------------------------------------------
# Enumerations worth a range check (value sets per version).

_B = frozenset([b"Y", b"N"])


def _E(s: str) -> frozenset:  # noqa: N802
    return frozenset(x.encode() for x in s.split())


_ENUMS_44 = {
    54: _E("1 2 3 4 5 6 7 8 9 A B C D E F G"),
    40: _E("1 2 3 4 6 7 8 9 D E G I J K L M P"),
    59: _E("0 1 2 3 4 5 6 7"),
    530: _E("1 2 3 4 5 6 7"),
    98: _E("0 1 2 3 4 5 6"),
    21: _E("1 2 3"),
    385: _E("S R"),
    123: _B, 43: _B, 97: _B, 141: _B, 114: _B, 121: _B, 377: _B, 464: _B, 636: _B,
}
_ENUMS_42 = dict(_ENUMS_44)
_ENUMS_42.update({
    54: _E("1 2 3 4 5 6 7 8 9"),
    40: _E("1 2 3 4 5 6 7 8 9 A B C D E F G H I P"),
    59: _E("0 1 2 3 4 5 6"),
})
ENUMS = {b"FIX.4.4": _ENUMS_44, b"FIX.4.2": _ENUMS_42}

# --------------------------------------------------------------------------------------
# Value format checks by type. Each returns True when the value is well formed.

_DIGITS = bytes.isdigit


# Whole numbers (INT, SEQNUM, LENGTH, NUMINGROUP, DAYOFMONTH) of more digits than a signed 64-bit
# int holds are badly formatted: the session stores sequence numbers in 64 bits and the codec reads
# at most 18 digits as a MsgSeqNum, and int() of more than 4,300 digits raises ValueError (a
# NumInGroup of 5,000 digits dropped the connection with a traceback instead of a Reject)
MAX_INT_DIGITS = 18


def _is_int(v: bytes) -> bool:
    if v[0] == 45:  # '-'
        v = v[1:]
    return v.isdigit() and len(v) <= MAX_INT_DIGITS


def _is_float(v: bytes) -> bool:
    if v[0] == 45:
        v = v[1:]
    if v.isdigit():
        return True
    return v.count(b".") == 1 and len(v) > 1 and v.replace(b".", b"", 1).isdigit()


def _is_char(v: bytes) -> bool:
    return len(v) == 1 and v != b" "


def _is_bool(v: bytes) -> bool:
    return v == b"Y" or v == b"N"


def _is_ts(v: bytes) -> bool:
    return is_fix_timestamp(v)


def _is_date(v: bytes) -> bool:
    return len(v) == 8 and parse_fix_timestamp(v + b"-00:00:00") is not None


def _is_monthyear(v: bytes) -> bool:
    if len(v) < 6 or not v[:6].isdigit() or not 1 <= int(v[4:6]) <= 12:
        return False
    rest = v[6:]
    if not rest:
        return True
    if len(rest) == 2 and rest.isdigit():
        return 1 <= int(rest) <= 31
    return len(rest) == 2 and rest[0] == 119 and 49 <= rest[1] <= 53  # w1..w5


def _is_day(v: bytes) -> bool:
    return v.isdigit() and len(v) <= MAX_INT_DIGITS and 1 <= int(v) <= 31


def _is_num_nonneg(v: bytes) -> bool:
    return v.isdigit() and len(v) <= MAX_INT_DIGITS


def _is_currency(v: bytes) -> bool:
    return len(v) == 3


def _is_country(v: bytes) -> bool:
    return len(v) == 2


_CHECKERS = {
    "INT": _is_int, "SEQNUM": _is_num_nonneg, "LENGTH": _is_num_nonneg,
    "NUMINGROUP": _is_num_nonneg, "DAYOFMONTH": _is_day,
    "QTY": _is_float, "PRICE": _is_float, "AMT": _is_float, "FLOAT": _is_float,
    "PRICEOFFSET": _is_float, "PERCENTAGE": _is_float,
    "CHAR": _is_char, "BOOLEAN": _is_bool, "UTCTIMESTAMP": _is_ts,
    "LOCALMKTDATE": _is_date, "UTCDATE": _is_date, "MONTHYEAR": _is_monthyear,
    "CURRENCY": _is_currency, "COUNTRY": _is_country,
}

# --------------------------------------------------------------------------------------
# Compiled message specs.


class _Group:
    __slots__ = ("count", "delim", "order", "subgroups", "members")

    def __init__(self, count: int, items: list):
        self.count = count
        self.order: dict[int, int] = {}  # member tag -> position in the declared layout
        self.subgroups: dict[int, _Group] = {}
        first = items[0]
        self.delim = first[1] if isinstance(first, tuple) and first[0] == "*" else first
        for i, it in enumerate(items):
            if isinstance(it, tuple) and it[0] == "G":
                sg = _Group(it[1], it[2])
                self.subgroups[it[1]] = sg
                self.order[it[1]] = i
            else:
                self.order[it[1] if isinstance(it, tuple) else it] = i
        m = set(self.order)
        for sg in self.subgroups.values():
            m |= sg.members
        self.members = frozenset(m)


class _Spec:
    __slots__ = ("allowed", "required", "groups", "group_tags", "info")


def _flatten(items, top: set, required: list, groups: dict):
    for it in items:
        if isinstance(it, tuple):
            if it[0] == "*":
                top.add(it[1])
                required.append(it[1])
            else:  # group
                g = _Group(it[1], it[2])
                groups[it[1]] = g
                top.add(it[1])
        else:
            top.add(it)


_HEADER_TAGS: set = set()
_flatten(HEADER, _HEADER_TAGS, [], {})
HEADER_TAGS = frozenset(_HEADER_TAGS)
_TRAILER_TAGS = frozenset([93, 89, 10])
_HEADER_REQUIRED = (49, 56, 34, 52)


def _compile(bs: bytes, layout: list) -> _Spec:
    top: set = set()
    required: list = []
    groups: dict = {}
    _flatten(HEADER + layout + TRAILER, top, required, groups)
    sp = _Spec()
    allowed = set(top)
    for g in groups.values():
        allowed |= g.members
    sp.allowed = frozenset(allowed)
    sp.required = tuple(t for t in required if t not in (8, 9, 35, 10) and t not in _HEADER_REQUIRED)
    sp.groups = groups
    group_only = sp.group_tags = frozenset(allowed - top)  # tags only allowed inside a group
    enums = ENUMS[bs]
    # tag -> (format checker | None, enum set | None, is_header) for every allowed tag.
    info = {}
    for t in allowed:
        ty = FIELDS[t][1] if t in FIELDS else "STRING"
        c = _CHECKERS.get(ty)
        e = enums.get(t)
        if e is not None and ty == "BOOLEAN":
            c = None  # Y/N flags: a wrong value is "out of range" (5), as for other enums
        if t in HEADER_TAGS:
            kind = 1
        elif t in _TRAILER_TAGS:
            kind = 2
        elif t in groups or t in group_only:
            kind = 3
        else:
            kind = 0
        info[t] = (c, e, kind)
    sp.info = info
    return sp


_SPECS: dict[bytes, dict[bytes, _Spec]] = {
    bs: {mt: _compile(bs, layout) for mt, layout in msgs.items()} for bs, msgs in MESSAGES.items()
}
for _bs in _SPECS:
    for _mt, _layout in MESSAGES[_bs].items():
        for _it in _layout:
            _x = _it[1] if isinstance(_it, tuple) and _it[0] == "*" else (None if isinstance(_it, tuple) else _it)
            assert _x is None or _x in FIELDS, (_bs, _mt, _x)
del _bs, _mt, _layout, _it, _x

# For the codec's repeated-tag detection: msg type -> {count tag -> member tags}, union of
# both versions (header groups included).
GROUP_MEMBERS_ANY_VERSION: dict[bytes, dict[int, frozenset]] = {}
for _bs, _specs in _SPECS.items():
    for _mt, _sp in _specs.items():
        _d = GROUP_MEMBERS_ANY_VERSION.setdefault(_mt, {})
        for _ct, _g in _sp.groups.items():
            _d[_ct] = _d.get(_ct, frozenset()) | _g.members
del _bs, _specs, _mt, _sp, _d, _ct, _g


# --------------------------------------------------------------------------------------
# Validation


class Problem(NamedTuple):
    reason: int            # SessionRejectReason (373); for business=True, 11 (see doc)
    tag: int | None        # RefTagID (371)
    text: str
    business: bool = False  # True: answer BusinessMessageReject (j), 380=3
    business_reason: int | None = None  # BusinessRejectReason (380) when business


_FIRST3 = [8, 9, 35]


def _p(reason: int, tag: int | None, text: str) -> Problem:
    return Problem(reason, tag, text)


def _bad_format(tag: int, v: bytes, bs: bytes) -> Problem:
    return _p(6, tag, "Incorrect data format for value: %s=%s (%s expected)"
              % (_tn(tag, bs), v.decode("latin-1"), FIELDS[tag][1]))


def _bad_enum(tag: int, v: bytes, bs: bytes) -> Problem:
    return _p(5, tag, "Value is incorrect (out of range) for this tag: %s=%s" % (_tn(tag, bs), v.decode("latin-1")))


# Message shapes (BeginString, MsgType, tags in wire order) that passed every structural
# check: a message of a known shape only needs its values checked. Traders send the same
# few shapes all day; the bound keeps hostile input from growing it.
_SHAPES: dict[tuple, tuple[tuple[int, object, object], ...]] = {}
SHAPE_CACHE_SIZE = 1024


def validate(msg, begin_string: bytes) -> Problem | None:
    """Check ``msg`` (a codec.FixMessage) against the dictionary of ``begin_string``.

    Returns the first problem found, or None. Order: tag numbers, header order, MsgType,
    empty values, undefined / not-allowed tags, repeated tags, required tags, value formats
    and enumerations, repeating groups.
    """
    d = msg._d
    simple = msg._fields is None and not msg.bad_tags and not msg.empty_tags and not msg.repeated_tags
    if simple:
        shape = (begin_string, msg.msg_type, tuple(d))
        checks = _SHAPES.get(shape)
        if checks is not None:
            for tag, f, e in checks:
                v = d[tag]
                if f is not None and not f(v):
                    return _bad_format(tag, v, begin_string)
                if e is not None and v not in e:
                    return _bad_enum(tag, v, begin_string)
            return None
    problem = _validate_full(msg, begin_string)
    if problem is None and simple:
        _remember_shape(shape)
    return problem


def _remember_shape(shape: tuple) -> None:
    """Cache the value checks of a shape whose message just passed ``_validate_full``."""
    bs, mt, tags = shape
    info = _SPECS[bs][mt].info
    checks = []
    for tag in tags:
        i = info.get(tag)
        if i is None:
            continue
        if i[2] == 3:
            return        # a repeating group: its layout is checked message by message
        if i[0] is not None or i[1] is not None:
            checks.append((tag, i[0], i[1]))
    if len(_SHAPES) >= SHAPE_CACHE_SIZE:
        _SHAPES.clear()
    _SHAPES[shape] = tuple(checks)


def _validate_full(msg, begin_string: bytes) -> Problem | None:
    bs = begin_string
    specs = _SPECS.get(bs)
    if specs is None:
        return _p(5, 8, "Unsupported BeginString %r" % bs.decode("latin-1"))
    if msg.bad_tags:
        t = msg.bad_tags[0]
        return _p(0, None, "Invalid tag number: %r" % t.decode("latin-1"))
    f3 = msg._fields
    first = list(islice(msg._d, 3)) if f3 is None else [t for t, _ in f3[:3]]
    if first != _FIRST3:
        # FixParser already drops such frames as garbled; this answers messages split elsewhere
        for i, want in enumerate(_FIRST3):
            if i >= len(first) or first[i] != want:
                return _p(14, want, "Tag specified out of required order: %s must be field %d"
                          % (_tn(want, bs), i + 1))
    mt = msg.msg_type
    spec = specs.get(mt)
    if spec is None or mt not in SUPPORTED_IN:
        mts = mt.decode("latin-1")
        if mt in DEFINED_MSG_TYPES[bs]:
            return Problem(11, 35, "Unsupported message type: %s" % mts, True, 3)
        return _p(11, 35, "Invalid MsgType: %r" % mts)
    if msg.empty_tags:
        t = msg.empty_tags[0]
        return _p(4, t, "Tag specified without a value: %s" % _tn(t, bs))

    d = msg._d
    fields = msg._fields
    info = spec.info
    bad_value = None  # first format / range problem; reported after structure checks
    # One pass: undefined / not-allowed tags, header fields after body fields, formats, enums.
    in_body = False
    has_groups = False
    for tag, v in (d.items() if msg._fields is None else fields):
        i = info.get(tag)
        if i is None:
            if tag >= USER_DEFINED_MIN:
                in_body = True
                continue
            if tag == 8 or tag == 9 or tag == 35 or tag == 10:
                continue  # position checked above; trailer checked by framing
            if tag in FIELDS:
                return _p(2, tag, "Tag not defined for this message type: %s in MsgType %s"
                          % (_tn(tag, bs), mt.decode("latin-1")))
            return _p(3, tag, "Undefined tag: %d" % tag)
        f, e, kind = i
        if kind == 1:
            if in_body:
                return _p(14, tag, "Tag specified out of required order: header field %s after body"
                          % _tn(tag, bs))
        elif kind != 2:
            in_body = True
            if kind == 3:
                has_groups = True
        if bad_value is None:
            if f is not None and not f(v):
                bad_value = _bad_format(tag, v, bs)
            elif e is not None and v not in e:
                bad_value = _bad_enum(tag, v, bs)

    if msg.repeated_tags:
        t = msg.repeated_tags[0]
        return _p(13, t, "Tag appears more than once: %s" % _tn(t, bs))

    for t in _HEADER_REQUIRED:
        if t not in d:
            return _p(1, t, "Required tag missing: %s" % _tn(t, bs))
    for t in spec.required:
        if t not in d:
            return _p(1, t, "Required tag missing: %s" % _tn(t, bs))
    if bad_value is not None:
        return bad_value

    if has_groups:
        fields = msg.fields
        group_tags = spec.group_tags
        groups = spec.groups
        i = 0
        n = len(fields)
        while i < n:
            tag = fields[i][0]
            g = groups.get(tag)
            if g is not None:
                r = _check_group(fields, i, g, bs)
                if isinstance(r, Problem):
                    return r
                i = r
                continue
            if tag in group_tags:
                return _p(15, tag, "Repeating group fields out of order: %s outside its group"
                          % _tn(tag, bs))
            i += 1
    return None


def _check_group(fields, i: int, g: _Group, bs: bytes):
    """Check the group whose count field is fields[i]; return the index after it or a Problem."""
    cv = fields[i][1]
    declared = int(cv)  # NUMINGROUP format checked before
    i += 1
    n = len(fields)
    count = 0
    order = g.order
    last = -1
    seen: set = set()
    while i < n:
        tag, _ = fields[i]
        if tag == g.delim:
            count += 1
            last = order[tag]
            seen = {tag}
            i += 1
            continue
        if tag not in order:
            break  # end of group
        if count == 0:
            return _p(15, tag, "Repeating group fields out of order: %s before delimiter %s of %s"
                      % (_tn(tag, bs), _tn(g.delim, bs), _tn(g.count, bs)))
        pos = order[tag]
        if pos < last or tag in seen:
            return _p(15, tag, "Repeating group fields out of order: %s in group %s"
                      % (_tn(tag, bs), _tn(g.count, bs)))
        last = pos
        seen.add(tag)
        sg = g.subgroups.get(tag)
        if sg is not None:
            r = _check_group(fields, i, sg, bs)
            if isinstance(r, Problem):
                return r
            i = r
            continue
        i += 1
    if count != declared:
        return _p(16, g.count, "Incorrect NumInGroup count for repeating group: %s=%d, %d instance(s)"
                  % (_tn(g.count, bs), declared, count))
    return i
