"""When a server certificate expires, read from its DER encoding.

The object-store probe exports the expiry of the endpoint's certificate (a predictable outage
worth an alert weeks ahead). `ssl` only decodes a certificate it verified, and a probe in
insecure mode verifies nothing, so the one field needed is read here from the raw DER: a
certificate is a SEQUENCE whose first element (tbsCertificate) holds, in order, an optional
[0] version, the serial number, the signature algorithm, the issuer and then the validity
(notBefore, notAfter). Pure: bytes in, a Unix time out, `CertificateError` for anything else.
"""

from __future__ import annotations

from datetime import UTC, datetime

SEQUENCE = 0x30
EXPLICIT_VERSION = 0xA0
UTC_TIME = 0x17
GENERALIZED_TIME = 0x18


class CertificateError(ValueError):
    """The bytes are not a DER certificate this reader understands."""


def _element(der: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, first content byte, end) of the element starting at `pos`."""
    if pos + 2 > len(der):
        raise CertificateError("truncated certificate")
    tag, length = der[pos], der[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or pos + count > len(der):
            raise CertificateError("unsupported length encoding")
        length = int.from_bytes(der[pos : pos + count], "big")
        pos += count
    end = pos + length
    if end > len(der):
        raise CertificateError("truncated certificate")
    return tag, pos, end


def _time(tag: int, text: bytes) -> float:
    try:
        value = text.decode("ascii")
        if tag == UTC_TIME:
            moment = datetime.strptime(value, "%y%m%d%H%M%SZ")
        elif tag == GENERALIZED_TIME:
            moment = datetime.strptime(value, "%Y%m%d%H%M%SZ")
        else:
            raise CertificateError(f"validity holds tag {tag:#x}, not a time")
    except (UnicodeDecodeError, ValueError) as error:
        raise CertificateError(f"unreadable validity time: {error}") from None
    return moment.replace(tzinfo=UTC).timestamp()


def not_after(der: bytes) -> float:
    """The certificate's notAfter as a Unix time."""
    tag, pos, _ = _element(der, 0)
    if tag != SEQUENCE:
        raise CertificateError("not a certificate")
    tag, pos, tbs_end = _element(der, pos)
    if tag != SEQUENCE:
        raise CertificateError("no tbsCertificate")
    tag, start, end = _element(der, pos)
    if tag == EXPLICIT_VERSION:
        pos = end
    for _ in range(3):  # serialNumber, signature, issuer
        _, _, pos = _element(der, pos)
    tag, pos, validity_end = _element(der, pos)
    if tag != SEQUENCE or validity_end > tbs_end:
        raise CertificateError("no validity")
    _, _, pos = _element(der, pos)  # notBefore
    tag, start, end = _element(der, pos)
    return _time(tag, der[start:end])
