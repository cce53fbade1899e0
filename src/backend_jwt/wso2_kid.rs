//! API-M's `kid` for a signing certificate (`JWTUtil.getKID`): base64url, unpadded, of the
//! certificate's issuer as Java prints it (`getIssuerDN().getName()`: `sun.security.x509.X500Name`,
//! the RDNs last first, `, ` between them, ` + ` inside one, each value quoted or escaped as
//! `AVA.toString` does), `#`, and the serial number in decimal. The certificate is read with the
//! `der` crate; an issuer Java would print in a way not reproduced here (a T61, Universal or
//! General string) gives no `kid`, never a different one.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use der::asn1::{AnyRef, ObjectIdentifier};
use der::{Decode, Encode, Reader, SliceReader, Tag, Tagged};

/// The `kid` API-M gives a key with this certificate (DER), or why it cannot be told.
pub(crate) fn of_certificate(certificate: &[u8]) -> Result<String, &'static str> {
    const MALFORMED: &str = "the certificate's issuer and serial number cannot be read";
    let certificate = AnyRef::from_der(certificate).map_err(|_| MALFORMED)?;
    let mut certificate = contents(certificate, Tag::Sequence).ok_or(MALFORMED)?;
    let tbs = certificate.decode::<AnyRef<'_>>().map_err(|_| MALFORMED)?;
    let mut tbs = contents(tbs, Tag::Sequence).ok_or(MALFORMED)?;
    let mut serial = tbs.decode::<AnyRef<'_>>().map_err(|_| MALFORMED)?;
    if serial.tag().is_context_specific() {
        // `[0] EXPLICIT Version`, present from version 2 on.
        serial = tbs.decode::<AnyRef<'_>>().map_err(|_| MALFORMED)?;
    }
    if serial.tag() != Tag::Integer {
        return Err(MALFORMED);
    }
    let serial = decimal(serial.value()).ok_or(MALFORMED)?;
    let _signature_algorithm = tbs.decode::<AnyRef<'_>>().map_err(|_| MALFORMED)?;
    let issuer = tbs.decode::<AnyRef<'_>>().map_err(|_| MALFORMED)?;
    let issuer = issuer_name(issuer)?;
    Ok(URL_SAFE_NO_PAD.encode(format!("{issuer}#{serial}")))
}

/// A reader over the contents of `value`, when it has tag `tag`.
fn contents(value: AnyRef<'_>, tag: Tag) -> Option<SliceReader<'_>> {
    (value.tag() == tag).then(|| SliceReader::new(value.value()).ok()).flatten()
}

/// `X500Name.toString()`: the RDNs last first.
fn issuer_name(name: AnyRef<'_>) -> Result<String, &'static str> {
    const MALFORMED: &str = "the certificate's issuer cannot be read";
    let mut rdns = contents(name, Tag::Sequence).ok_or(MALFORMED)?;
    let mut printed = Vec::new();
    while !rdns.is_finished() {
        let rdn = rdns.decode::<AnyRef<'_>>().map_err(|_| MALFORMED)?;
        let mut attributes = contents(rdn, Tag::Set).ok_or(MALFORMED)?;
        let mut assertions = Vec::new();
        while !attributes.is_finished() {
            let attribute = attributes.decode::<AnyRef<'_>>().map_err(|_| MALFORMED)?;
            let mut parts = contents(attribute, Tag::Sequence).ok_or(MALFORMED)?;
            let oid = parts.decode::<ObjectIdentifier>().map_err(|_| MALFORMED)?;
            let value = parts.decode::<AnyRef<'_>>().map_err(|_| MALFORMED)?;
            assertions.push(format!("{}={}", keyword(&oid), attribute_value(value)?));
        }
        printed.push(assertions.join(" + "));
    }
    printed.reverse();
    Ok(printed.join(", "))
}

/// Java's keyword for an attribute type (`AVAKeyword`, the last of several for one type), else
/// `OID.` and the type.
fn keyword(oid: &ObjectIdentifier) -> String {
    let dotted = oid.to_string();
    let known = match dotted.as_str() {
        "2.5.4.3" => "CN",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.12" => "T",
        "1.3.6.1.4.1.42.2.11.2.1" => "IP",
        "2.5.4.9" => "STREET",
        "0.9.2342.19200300.100.1.25" => "DC",
        "2.5.4.46" => "DNQ",
        "2.5.4.4" => "SURNAME",
        "2.5.4.42" => "GIVENNAME",
        "2.5.4.43" => "INITIALS",
        "2.5.4.44" => "GENERATION",
        "1.2.840.113549.1.9.1" => "EMAILADDRESS",
        "0.9.2342.19200300.100.1.1" => "UID",
        "2.5.4.5" => "SERIALNUMBER",
        _ => return format!("OID.{dotted}"),
    };
    known.to_string()
}

/// A value as `AVA.toKeywordValueString` prints it: a string quoted when it holds a separator or
/// starts, ends or doubles white space, `"` and `\` escaped; any other type `#` and its DER in hex.
fn attribute_value(value: AnyRef<'_>) -> Result<String, &'static str> {
    const UNSURE: &str = "the certificate's issuer holds a string type whose Java printing is not reproduced";
    let text = match value.tag() {
        Tag::Utf8String => std::str::from_utf8(value.value()).map_err(|_| UNSURE)?.to_string(),
        Tag::PrintableString | Tag::Ia5String if value.value().is_ascii() => {
            std::str::from_utf8(value.value()).map_err(|_| UNSURE)?.to_string()
        }
        Tag::BmpString => {
            let pairs = value.value().chunks_exact(2);
            if !pairs.remainder().is_empty() {
                return Err(UNSURE);
            }
            let units: Vec<u16> =
                pairs.filter_map(|pair| <[u8; 2]>::try_from(pair).ok()).map(u16::from_be_bytes).collect();
            String::from_utf16(&units).map_err(|_| UNSURE)?
        }
        Tag::PrintableString | Tag::Ia5String | Tag::TeletexString | Tag::GeneralString => return Err(UNSURE),
        // UniversalString (28) has no `Tag` of its own.
        tag if tag.is_universal() && tag.number().value() == 28 => return Err(UNSURE),
        _ => {
            let encoded = value.to_der().map_err(|_| UNSURE)?;
            return Ok(format!("#{}", crate::hashing::hex(&encoded).to_ascii_uppercase()));
        }
    };
    Ok(quoted(&text))
}

/// Java's `DerValue.isPrintableStringChar`.
fn printable(c: char) -> bool {
    c.is_ascii_alphanumeric() || " '()+,-./:=?".contains(c)
}

fn quoted(text: &str) -> String {
    const ESCAPEES: &str = ",+=\n<>#;\\\"";
    let count = text.chars().count();
    let already_quoted = count > 1 && text.starts_with('"') && text.ends_with('"');
    let mut quote_needed = false;
    let mut previous_white = false;
    let mut out = String::with_capacity(text.len() + 2);
    for (index, c) in text.chars().enumerate() {
        if already_quoted && (index == 0 || index == count - 1) {
            out.push(c);
            continue;
        }
        if printable(c) || ESCAPEES.contains(c) {
            let white = c == ' ' || c == '\n';
            if !quote_needed && ((index == 0 && white) || ESCAPEES.contains(c)) {
                quote_needed = true;
            }
            if white {
                if !quote_needed && previous_white {
                    quote_needed = true;
                }
                previous_white = true;
            } else {
                if c == '"' || c == '\\' {
                    out.push('\\');
                }
                previous_white = false;
            }
            out.push(c);
        } else {
            previous_white = false;
            out.push(c);
        }
    }
    if out.ends_with([' ', '\n']) {
        quote_needed = true;
    }
    if !already_quoted && quote_needed {
        format!("\"{out}\"")
    } else {
        out
    }
}

/// A DER INTEGER's contents (two's complement, big-endian) in decimal, as `BigInteger.toString`.
fn decimal(integer: &[u8]) -> Option<String> {
    if integer.is_empty() || integer.len() > 64 {
        return None;
    }
    let negative = integer.first().is_some_and(|first| first & 0x80 != 0);
    let mut magnitude = integer.to_vec();
    if negative {
        // The two's complement's negation: invert, add one.
        magnitude.iter_mut().for_each(|byte| *byte = !*byte);
        for byte in magnitude.iter_mut().rev() {
            let (sum, carry) = byte.overflowing_add(1);
            *byte = sum;
            if !carry {
                break;
            }
        }
    }
    let mut digits = Vec::new();
    while magnitude.iter().any(|byte| *byte != 0) {
        let mut remainder = 0u32;
        for byte in magnitude.iter_mut() {
            let value = (remainder << 8) | u32::from(*byte);
            *byte = u8::try_from(value / 10).ok()?;
            remainder = value % 10;
        }
        digits.push(char::from_digit(remainder, 10)?);
    }
    if digits.is_empty() {
        digits.push('0');
    }
    if negative {
        digits.push('-');
    }
    Some(digits.iter().rev().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn der(pem_text: &str) -> Vec<u8> {
        pem::parse(pem_text).unwrap().into_contents()
    }

    /// Each `kid` as Java 17 computes it with API-M's `JWTUtil.getKID` code
    /// (`tests/fixtures/kid/Kid.java`, on the certificates beside it).
    #[test]
    fn the_kid_is_what_api_m_computes_for_each_certificate() {
        let cases = [
            // The subject of API-M's shipped `wso2carbon` certificate: the `kid` in WSO2's own
            // integration tests of API-M 4.x's backend JWT.
            (include_str!("../../tests/fixtures/kid/wso2-like.crt"), "Q049bG9jYWxob3N0LCBPVT1XU08yLCBPPVdTTzIsIEw9TW91bnRhaW4gVmlldywgU1Q9Q0EsIEM9VVMjMjExMjc5NDc5Njg2NTExMjgzMzcxNzY2ODEwMjc1MjAyMjU0ODQ5MzE4NzgwMzI3"),
            (include_str!("../../tests/fixtures/keys/rsa-a.crt"), "Tz1hcGltLWZpbHRlciB0ZXN0cywgQ049YXBpbS1iYWNrZW5kLWp3dCMyNzk4MjYxOTMyODM2NjM0NzkxOTQwMDc2NTI2MzAyMTA5NDIyNjU5NjA2NDgwNjQ"),
            // A multi-valued RDN, domain components, an IA5 e-mail address.
            (include_str!("../../tests/fixtures/kid/multi.crt"), "RU1BSUxBRERSRVNTPWFAYi5jLCBEQz1jb20sIERDPWV4YW1wbGUsIENOPXggKyBVSUQ9eSMx"),
            // Every keyword Java knows, and one it does not (`OID.2.5.4.97`).
            (include_str!("../../tests/fixtures/kid/oids.crt"), "U1RSRUVUPTEgTWFpbiBTdCwgRE5RPXEsIEdFTkVSQVRJT049SUlJLCBJTklUSUFMUz1BTCwgU1VSTkFNRT1MZWUsIEdJVkVOTkFNRT1Bbm4sIFQ9RHIsIFNFUklBTE5VTUJFUj00MiwgT0lELjIuNS40Ljk3PVZBVERFLTEyMyMz"),
            // Doubled spaces, a value already quoted, a leading `#`, a line feed; serial 0x80.
            (include_str!("../../tests/fixtures/kid/spaces.crt"), "TD0ibmV3CmxpbmUiLCBPVT0iI2hhc2giLCBPPSJxdW90ZWQiLCBDTj0idHdvICBzcGFjZXMiIzEyOA"),
            // Separators, quotes, backslashes, leading and trailing spaces.
            (include_str!("../../tests/fixtures/kid/specials.crt"), "U1Q9ImJhY2tcXHNsYXNoPWVxIiwgTD0ic2VtaTtjb2xvbjw-IyIsIE9VPSIgbGVhZCBhbmQgdHJhaWwgIiwgTz0iUXVvdGUgXCJ4XCIiLCBDTj0iYSwgYitjIiM3"),
            (include_str!("../../tests/fixtures/kid/utf8.crt"), "Tz1ab8OrLCBDTj3ms6jmlocgw7xuw69jb2RlIzI1NQ"),
        ];
        for (certificate, kid) in cases {
            assert_eq!(of_certificate(&der(certificate)).as_deref(), Ok(kid), "{certificate}");
        }
    }

    #[test]
    fn serial_numbers_print_as_java_s_big_integer() {
        assert_eq!(decimal(&[0x00]).as_deref(), Some("0"));
        assert_eq!(decimal(&[0x00, 0x80]).as_deref(), Some("128"));
        assert_eq!(decimal(&[0xfb]).as_deref(), Some("-5"), "two's complement");
        assert_eq!(decimal(&[0xff, 0x00]).as_deref(), Some("-256"));
        assert_eq!(decimal(&[0x80]).as_deref(), Some("-128"));
        assert_eq!(
            decimal(&[0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00]).as_deref(),
            Some("18446744073709551616")
        );
        assert_eq!(decimal(&[]), None);
        assert_eq!(decimal(&[1; 65]), None, "longer than any serial number");
    }

    #[test]
    fn a_certificate_that_cannot_be_read_gives_no_kid() {
        let mut certificate = der(include_str!("../../tests/fixtures/kid/utf8.crt"));
        assert!(of_certificate(&[]).is_err());
        assert!(of_certificate(&certificate[..certificate.len() / 2]).is_err(), "cut");
        certificate[0] = 0x31;
        assert!(of_certificate(&certificate).is_err(), "not a SEQUENCE");
        // A T61 string: Java prints it through its own charset reading, not reproduced here.
        assert!(attribute_value(AnyRef::new(Tag::TeletexString, b"x").unwrap()).is_err());
        assert_eq!(attribute_value(AnyRef::new(Tag::Integer, &[5]).unwrap()).as_deref(), Ok("#020105"), "not a string");
        assert_eq!(attribute_value(AnyRef::new(Tag::BmpString, &[0, b'A', 0, b' ']).unwrap()).as_deref(), Ok("\"A \""));
    }
}
