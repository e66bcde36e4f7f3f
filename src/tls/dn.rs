//! A certificate subject as Java's `X500Principal.getName()` prints it (RFC 2253): the
//! x509 ACL scheme's id is exactly that string, so an ACL written for ZooKeeper
//! (`x509:CN=alice,OU=dev,O=example`) matches here too.
//!
//! RFC 2253 as Java writes it: the RDNs last to first, joined by `,`; the attributes of
//! one RDN joined by `+`; the keywords CN, C, L, ST, O, OU, STREET, DC and UID; any
//! other attribute as its dotted OID and `#` followed by the hex of its DER value
//! (emailAddress too). Values are escaped: `,+"\<>;` get a backslash, as do a leading
//! `#` or space and a trailing space.

use x509_parser::prelude::{FromDer, X509Certificate};

fn keyword(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.9" => "STREET",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        _ => return None,
    })
}

fn escape(v: &str, out: &mut String) {
    let n = v.chars().count();
    for (i, c) in v.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i + 1 == n && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
}

/// The subject DN of a DER certificate, RFC 2253 as Java prints it.
pub fn subject_rfc2253(der: &[u8]) -> Result<String, String> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let mut out = String::new();
    let rdns: Vec<_> = cert.subject().iter().collect();
    for (i, rdn) in rdns.iter().rev().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for (j, atv) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            let oid = atv.attr_type().to_id_string();
            match (keyword(&oid), atv.as_str()) {
                (Some(k), Ok(v)) => {
                    out.push_str(k);
                    out.push('=');
                    escape(v, &mut out);
                }
                _ => {
                    out.push_str(&oid);
                    out.push_str("=#");
                    let raw = atv.attr_value();
                    // The whole DER value: tag, length and contents.
                    let mut der = Vec::new();
                    der.push(raw.tag().0 as u8);
                    let len = raw.data.len();
                    if len < 0x80 {
                        der.push(len as u8);
                    } else {
                        let bytes: Vec<u8> = len
                            .to_be_bytes()
                            .into_iter()
                            .skip_while(|&b| b == 0)
                            .collect();
                        der.push(0x80 | bytes.len() as u8);
                        der.extend(bytes);
                    }
                    der.extend_from_slice(raw.data);
                    for b in der {
                        out.push_str(&format!("{b:02x}"));
                    }
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_follows_rfc2253() {
        let mut s = String::new();
        escape(" a,b+c\"d\\e<f>g;h ", &mut s);
        assert_eq!(s, "\\ a\\,b\\+c\\\"d\\\\e\\<f\\>g\\;h\\ ");
        let mut s = String::new();
        escape("#x", &mut s);
        assert_eq!(s, "\\#x");
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(subject_rfc2253(b"\x30\x03\x02\x01\x00").is_err());
        assert!(subject_rfc2253(b"").is_err());
    }
}
