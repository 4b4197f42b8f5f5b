"""The ITU-T G.107 (06/2015) E-model: transmission rating R and MOS from delay, loss and the codec. Pure.

    R = Ro − Is − Id − Ie,eff + A                                        (G.107 eq. 7-1)

Every parameter of G.107 Table 3 is a field of :class:`Connection` with the
table's default; with all defaults R = 93.2 (G.107 §7.7 / Table 3 note), MOS
4.41. Equation numbers below are those of G.107 (06/2015) §7.

For a VoIP call measured by phonekit (:func:`rate_call`): the mean one-way
delay T and the absolute delay Ta are both the measured mouth-to-ear delay,
the round-trip delay Tr is twice that (the talker's echo, if any, comes from
the far end), and every other parameter keeps its default (handsets with
G.107's default loudness ratings, echo loss TELR 65 dB: good echo control).

G.107 is a narrowband model. Wideband codecs (G.722, Speex 16/32 kHz) are
rated here on the narrowband scale with the impairments of their narrowband
equivalent (see :data:`CODECS`): the model cannot credit their extra
bandwidth (that needs G.107.1, whose R scale goes to 129), so their MOS is
a lower bound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

__all__ = [
    "CODECS",
    "CodecImpairment",
    "Connection",
    "Rating",
    "codec_impairment",
    "mos_from_r",
    "r_from_mos",
    "rate",
    "rate_call",
]


@dataclass(frozen=True)
class CodecImpairment:
    """A codec's equipment impairment factors (ITU-T G.113 Appendix I) and where they come from."""

    name: str
    """RTP encoding name as in SDP (``PCMU``, ``G722``, ``speex``)."""
    clock_rate_hz: int
    ie: float
    """Equipment impairment factor Ie without packet loss."""
    bpl: float
    """Packet-loss robustness factor Bpl (higher: the codec and its concealment bear loss better)."""
    source: str
    estimated: bool
    """True when G.113 gives no value for this codec and the figure is an estimate (see ``source``)."""

    @property
    def key(self) -> str:
        return f"{self.name}/{self.clock_rate_hz}"


CODECS: tuple[CodecImpairment, ...] = (
    CodecImpairment(
        "PCMU", 8000, 0.0, 25.1,
        "G.113 App. I Table I.1 (G.711 Ie = 0) and Table I.3 (G.711 with packet-loss concealment, random "
        "loss: Bpl = 25.1; without concealment 4.3). pjmedia conceals loss in G.711 (its own PLC, taken as "
        "equivalent to G.711 Appendix I's)",
        estimated=False,
    ),
    CodecImpairment(
        "PCMA", 8000, 0.0, 25.1, "as PCMU: G.711 A-law, G.113 App. I Tables I.1 and I.3 (with PLC)", estimated=False
    ),
    CodecImpairment(
        "G722", 16000, 0.0, 25.1,
        "estimated: wideband, rated on the narrowband scale as no worse than G.711 (Ie = 0); Bpl of G.711 with "
        "PLC (pjmedia conceals G.722 loss with the same PLC)",
        estimated=True,
    ),
    CodecImpairment(
        "GSM", 8000, 20.0, 10.0,
        "Ie = 20: G.113 App. I Table I.1 (GSM 06.10 full rate, 13 kbit/s); Bpl estimated: G.113 gives none "
        "for GSM-FR, 10.0 is its value for GSM-EFR (Table I.3), the same family of frame substitution",
        estimated=True,
    ),
    CodecImpairment(
        "iLBC", 8000, 11.0, 32.0,
        "estimated: not in G.113. Ie 11 as for the 8-16 kbit/s CELP codecs of G.113 Table I.1 (G.729A 11, "
        "G.728 16k 7); Bpl 32 because iLBC's frames are coded independently and it conceals loss itself "
        "(RFC 3951), which published listening tests found at least as robust as G.711 with PLC",
        estimated=True,
    ),
    CodecImpairment(
        "speex", 8000, 11.0, 19.0,
        "estimated: not in G.113. Narrowband Speex (CELP, 8-15 kbit/s in pjmedia's default mode) rated like "
        "G.729A (G.113 App. I Table I.3: Ie 11, Bpl 19.0)",
        estimated=True,
    ),
    CodecImpairment(
        "speex", 16000, 11.0, 19.0,
        "estimated: wideband Speex rated on the narrowband scale like narrowband Speex (see speex/8000)",
        estimated=True,
    ),
    CodecImpairment(
        "speex", 32000, 11.0, 19.0,
        "estimated: ultra-wideband Speex rated on the narrowband scale like narrowband Speex (see speex/8000)",
        estimated=True,
    ),
)  # fmt: skip
"""Codecs pjsua2 offers (PCMU, PCMA, G.722, GSM, iLBC, Speex; L16 is not a telephony codec)."""


def codec_impairment(codec: str) -> CodecImpairment:
    """The table row for ``codec``: ``PCMU``, ``PCMU/8000``, ``speex/16000/1`` (case-insensitive).

    Without a rate, the first row of that name (narrowband Speex for ``speex``).
    """
    parts = codec.strip().split("/")
    name = parts[0].lower()
    rate = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
    for row in CODECS:
        if row.name.lower() == name and (rate is None or row.clock_rate_hz == rate):
            return row
    known = ", ".join(row.key for row in CODECS)
    raise ValueError(f"no E-model impairment values for codec {codec!r} (known: {known})")


@dataclass(frozen=True)
class Connection:
    """The input parameters of G.107 Table 3, with its default values."""

    slr_db: float = 8.0
    """Send loudness rating SLR."""
    rlr_db: float = 2.0
    """Receive loudness rating RLR."""
    stmr_db: float = 15.0
    """Sidetone masking rating STMR."""
    lstr_db: float = 18.0
    """Listener sidetone rating LSTR."""
    ds_db: float = 3.0
    """D-value of the telephone, send side."""
    dr_db: float = 3.0
    """D-value of the telephone, receive side (unused by eqs. 7-1 … 7-29; kept for Table 3 completeness)."""
    telr_db: float = 65.0
    """Talker echo loudness rating TELR."""
    wepl_db: float = 110.0
    """Weighted echo path loss WEPL."""
    t_ms: float = 0.0
    """Mean one-way delay of the echo path T."""
    tr_ms: float = 0.0
    """Round-trip delay in a 4-wire loop Tr."""
    ta_ms: float = 0.0
    """Absolute delay in echo-free connections Ta (mouth to ear)."""
    qdu: float = 1.0
    """Number of quantization distortion units."""
    ie: float = 0.0
    """Equipment impairment factor Ie."""
    bpl: float = 1.0
    """Packet-loss robustness factor Bpl."""
    ppl_percent: float = 0.0
    """Random packet-loss probability Ppl."""
    burst_r: float = 1.0
    """Burst ratio BurstR (1: random loss)."""
    nc_dbm0p: float = -70.0
    """Circuit noise referred to the 0 dBr point Nc."""
    nfor_dbmp: float = -64.0
    """Noise floor at the receive side Nfor."""
    ps_dba: float = 35.0
    """Room noise at the send side Ps."""
    pr_dba: float = 35.0
    """Room noise at the receive side Pr."""
    a: float = 0.0
    """Advantage factor A."""
    mt_ms: float = 100.0
    """Minimum perceivable delay mT (eq. 7-28)."""
    st: float = 1.0
    """Delay sensitivity sT (eq. 7-28)."""

    def __post_init__(self) -> None:
        for name in ("t_ms", "tr_ms", "ta_ms"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0 (got {getattr(self, name)!r})")
        if not 0.0 <= self.ppl_percent <= 100.0:
            raise ValueError(f"ppl_percent must be 0..100 (got {self.ppl_percent!r})")
        if self.bpl <= 0 or self.burst_r <= 0 or self.qdu <= 0 or self.mt_ms <= 0 or self.st <= 0:
            raise ValueError(
                f"bpl, burst_r, qdu, mt_ms and st must be > 0 "
                f"(got {self.bpl!r}, {self.burst_r!r}, {self.qdu!r}, {self.mt_ms!r}, {self.st!r})"
            )


@dataclass(frozen=True)
class Rating:
    """R, its terms, and the MOS it predicts."""

    r: float
    mos: float
    ro: float
    """Basic signal-to-noise ratio Ro (eq. 7-2)."""
    is_: float
    """Simultaneous impairment factor Is (eq. 7-8)."""
    id_: float
    """Delay impairment factor Id = Idte + Idle + Idd (eq. 7-18)."""
    idte: float
    """Talker echo impairment (eq. 7-19)."""
    idle: float
    """Listener echo impairment (eq. 7-26)."""
    idd: float
    """Impairment by absolute delay (eq. 7-28)."""
    ie_eff: float
    """Effective equipment impairment factor with packet loss (eq. 7-29)."""
    a: float


def _log10(x: float) -> float:
    return math.log10(x)


def rate(c: Connection | None = None) -> Rating:
    """R and MOS of a connection (G.107 §7 eqs. 7-1 … 7-29 and Annex B)."""
    c = c or Connection()
    olr = c.slr_db + c.rlr_db
    # Ro: basic signal-to-noise ratio (7-2 … 7-7).
    nos = c.ps_dba - c.slr_db - c.ds_db - 100.0 + 0.004 * (c.ps_dba - olr - c.ds_db - 14.0) ** 2
    pre = c.pr_dba + 10.0 * _log10(1.0 + 10.0 ** ((10.0 - c.lstr_db) / 10.0))
    nor = c.rlr_db - 121.0 + pre + 0.008 * (pre - 35.0) ** 2
    nfo = c.nfor_dbmp + c.rlr_db
    no = 10.0 * _log10(10.0 ** (c.nc_dbm0p / 10.0) + 10.0 ** (nos / 10.0) + 10.0 ** (nor / 10.0) + 10.0 ** (nfo / 10.0))
    ro = 15.0 - 1.5 * (c.slr_db + no)
    # Is: simultaneous impairments (7-8 … 7-17).
    xolr = olr + 0.2 * (64.0 + no - c.rlr_db)
    iolr = 20.0 * ((1.0 + (xolr / 8.0) ** 8) ** (1.0 / 8.0) - xolr / 8.0)
    stmro = -10.0 * _log10(10.0 ** (-c.stmr_db / 10.0) + math.exp(-c.t_ms / 4.0) * 10.0 ** (-c.telr_db / 10.0))
    ist = (
        12.0 * (1.0 + ((stmro - 13.0) / 6.0) ** 8) ** (1.0 / 8.0)
        - 28.0 * (1.0 + ((stmro + 1.0) / 19.4) ** 35) ** (1.0 / 35.0)
        - 13.0 * (1.0 + ((stmro - 3.0) / 33.0) ** 13) ** (1.0 / 13.0)
        + 29.0
    )
    q = 37.0 - 15.0 * _log10(c.qdu)
    g = 1.07 + 0.258 * q + 0.0602 * q**2
    y = (ro - 100.0) / 15.0 + 46.0 / 8.4 - g / 9.0
    z = 46.0 / 30.0 - g / 40.0
    iq = 15.0 * _log10(1.0 + 10.0**y + 10.0**z)
    is_ = iolr + ist + iq
    # Idte: talker echo (7-19 … 7-22); below STMR 9 dB, TERV is raised by Ist/2 (7-23).
    roe = -1.5 * (no - c.rlr_db)
    terv = c.telr_db - 40.0 * _log10((1.0 + c.t_ms / 10.0) / (1.0 + c.t_ms / 150.0)) + 6.0 * math.exp(-0.3 * c.t_ms**2)
    if c.stmr_db < 9.0:
        terv += ist / 2.0
    re = 80.0 + 2.5 * (terv - 14.0)
    idte = ((roe - re) / 2.0 + math.sqrt((roe - re) ** 2 / 4.0 + 100.0) - 1.0) * (1.0 - math.exp(-c.t_ms))
    # Idle: listener echo (7-26, 7-27).
    rle = 10.5 * (c.wepl_db + 7.0) * (c.tr_ms + 1.0) ** -0.25
    idle = (ro - rle) / 2.0 + math.sqrt((ro - rle) ** 2 / 4.0 + 169.0)
    # Idd: absolute delay (7-28).
    if c.ta_ms <= c.mt_ms:
        idd = 0.0
    else:
        x = _log10(c.ta_ms / c.mt_ms) / _log10(2.0)
        k = 6.0 * c.st
        idd = 25.0 * ((1.0 + x**k) ** (1.0 / k) - 3.0 * (1.0 + (x / 3.0) ** k) ** (1.0 / k) + 2.0)
    id_ = idte + idle + idd
    # Ie,eff: equipment impairment with random or bursty packet loss (7-29).
    ie_eff = c.ie + (95.0 - c.ie) * c.ppl_percent / (c.ppl_percent / c.burst_r + c.bpl)
    r = ro - is_ - id_ - ie_eff + c.a
    return Rating(r=r, mos=mos_from_r(r), ro=ro, is_=is_, id_=id_, idte=idte, idle=idle, idd=idd, ie_eff=ie_eff,
                  a=c.a)  # fmt: skip


def mos_from_r(r: float) -> float:
    """Estimated conversational MOS (MOS-CQE) from R (G.107 Annex B, eq. B-4)."""
    if r <= 0.0:
        return 1.0
    if r >= 100.0:
        return 4.5
    return 1.0 + 0.035 * r + r * (r - 60.0) * (100.0 - r) * 7.0e-6


def r_from_mos(mos: float) -> float:
    """The R that eq. B-4 maps to ``mos`` (1 < MOS < 4.5), by bisection: MOS thresholds as R thresholds."""
    if not 1.0 < mos < 4.5:
        raise ValueError(f"MOS must be between 1 and 4.5 exclusive (got {mos!r})")
    low, high = 0.0, 100.0
    for _ in range(60):
        mid = (low + high) / 2.0
        if mos_from_r(mid) < mos:
            low = mid
        else:
            high = mid
    return (low + high) / 2.0


def rate_call(
    codec: CodecImpairment,
    one_way_delay_ms: float,
    loss_percent: float,
    burst_r: float = 1.0,
    base: Connection | None = None,
) -> Rating:
    """R and MOS of one direction of a VoIP call: mouth-to-ear delay, packet loss, codec.

    T = Ta = ``one_way_delay_ms``, Tr = 2·T; Ie and Bpl from ``codec``; every
    other parameter from ``base`` (G.107 defaults).
    """
    if one_way_delay_ms < 0:
        raise ValueError(f"one_way_delay_ms must be >= 0 (got {one_way_delay_ms!r})")
    return rate(
        replace(
            base or Connection(),
            t_ms=one_way_delay_ms,
            ta_ms=one_way_delay_ms,
            tr_ms=2.0 * one_way_delay_ms,
            ie=codec.ie,
            bpl=codec.bpl,
            ppl_percent=min(100.0, max(0.0, loss_percent)),
            burst_r=burst_r,
        )
    )
