"""
Value representations (PS3.5 section 6.2): what encoding needs to know of
each VR, and nothing of what its values mean.
"""

#: Every VR of PS3.5 Table 6.2-1.
VRS = frozenset(
    "AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL UN UR US UT UV".split()
)

#: VRs whose explicit VR header has two reserved bytes and a 32-bit length
#: (PS3.5 Table 7.1-1); every other VR has a 16-bit length (Table 7.1-2).
LONG_LENGTH_VRS = frozenset("OB OD OF OL OV OW SQ SV UC UN UR UT UV".split())

#: VRs whose explicit VR header has a 16-bit length.
SHORT_LENGTH_VRS = VRS - LONG_LENGTH_VRS

#: Text VRs, padded to even length with a space (PS3.5 6.2); every other
#: VR, UI included, is padded with a NUL byte.
SPACE_PADDED_VRS = frozenset("AE AS CS DA DS DT IS LO LT PN SH ST TM UC UR UT".split())

#: The size of the words whose bytes change order between little and big
#: endian (PS3.5 7.3); AT is a pair of 16-bit words.  VRs not listed are
#: byte streams (text, OB, UN).
WORD_SIZES = {
    "AT": 2, "OW": 2, "SS": 2, "US": 2,
    "FL": 4, "OF": 4, "OL": 4, "SL": 4, "UL": 4,
    "FD": 8, "OD": 8, "OV": 8, "SV": 8, "UV": 8,
}  # fmt: skip

#: The VRs added to PS3.5 after 1993, which an old reader knows only as OB
#: (DCMTK's C{DcmVR::getValidEVR()} writes them as OB when told to).
POST_1993_VRS = frozenset("OD OF OL OV SV UC UN UR UT UV".split())


def pad(value: bytes, vr: str) -> bytes:
    """
    C{value} padded to even length, with a space for the text VRs and a
    NUL byte for the others (PS3.5 6.2).
    """
    if len(value) % 2:
        return value + (b" " if vr in SPACE_PADDED_VRS else b"\x00")
    return value
