//! Key and trust stores as ZooKeeper reads them (`X509Util`, `KeyStoreFileType`,
//! `PEMFileLoader`): JKS, PKCS12 and PEM files, the type given by `ssl.*Store.type` or,
//! when that is empty, by the file's extension (`.jks`, `.p12`, `.pem`; any other
//! extension is an error, as in ZooKeeper, which names BCFKS too: refused here, there
//! is no BouncyCastle). The type is matched case-insensitively (`valueOf(toUpperCase)`),
//! the extension exactly.
//!
//! PKCS12 is decoded by the `p12-keystore` crate. JKS is Sun's own format, which no
//! maintained crate reads, and it is small enough to read here: a header, entries
//! (private keys protected by Sun's SHA-1 XOR "KeyProtector", certificates), and a SHA-1
//! over the password, the words "Mighty Aphrodite" and the whole file before it. A key
//! store's private key must be PKCS#8 (what keytool writes); PEM files may also hold
//! PKCS#1 or SEC1 keys (a superset of ZooKeeper's PemReader, which wants PKCS#8), but
//! not encrypted ones.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha1::{Digest, Sha1};

/// A store file's format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreType {
    Jks,
    Pem,
    Pkcs12,
}

/// `KeyStoreFileType.fromPropertyValueOrFileName`: the configured type, else the
/// extension's.
pub fn store_type(configured: Option<&str>, path: &str) -> Result<StoreType, String> {
    match configured.map(str::trim).filter(|t| !t.is_empty()) {
        Some(t) => match t.to_ascii_uppercase().as_str() {
            "JKS" => Ok(StoreType::Jks),
            "PEM" => Ok(StoreType::Pem),
            "PKCS12" => Ok(StoreType::Pkcs12),
            "BCFKS" => Err("BCFKS stores are not supported (use JKS, PKCS12 or PEM)".into()),
            _ => Err(format!("unknown store type {t:?}: JKS, PKCS12 or PEM")),
        },
        None => match path.rfind('.').map(|i| &path[i..]) {
            Some(".jks") => Ok(StoreType::Jks),
            Some(".pem") => Ok(StoreType::Pem),
            Some(".p12") => Ok(StoreType::Pkcs12),
            Some(".bcfks") => Err("BCFKS stores are not supported (use JKS, PKCS12 or PEM)".into()),
            _ => Err(format!(
                "unable to auto-detect store file type from file name: {path} (give the type, or name it .jks, .p12 or .pem)"
            )),
        },
    }
}

/// A server's (or client's) certificate chain, leaf first, and its private key.
pub struct KeyMaterial {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

fn read(path: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))
}

/// Loads the private key and its chain from a key store.
pub fn load_key_store(path: &str, password: &str, ty: StoreType) -> Result<KeyMaterial, String> {
    let bytes = read(path)?;
    let m = match ty {
        // PEMFileLoader passes a non-empty password to PemReader as the key's
        // encryption password, so ZooKeeper refuses an unencrypted key with one.
        StoreType::Pem if !password.is_empty() => Err("a password is set, which ZooKeeper takes for the password of an encrypted PEM key; encrypted PEM keys are not supported here: store the key unencrypted and leave the password empty".to_string()),
        StoreType::Pem => pem_key(&bytes),
        StoreType::Pkcs12 => pkcs12_key(&bytes, password),
        StoreType::Jks => jks(&bytes, password).and_then(|s| {
            s.key
                .ok_or_else(|| "the JKS file holds no private key entry".to_string())
        }),
    };
    m.map_err(|e| format!("key store {path}: {e}"))
}

/// Loads the trusted certificates of a trust store (every certificate in it).
pub fn load_trust_store(
    path: &str,
    password: &str,
    ty: StoreType,
) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = read(path)?;
    let certs = match ty {
        StoreType::Pem => pem_certs(&bytes),
        StoreType::Pkcs12 => p12_keystore::Pkcs12Archive::from_pkcs12(&bytes, password)
            .map_err(|e| format!("not a PKCS12 file, or a wrong password: {e}"))
            .map(|a| {
                a.certs
                    .iter()
                    .map(|c| CertificateDer::from(c.cert.as_der().to_vec()))
                    .collect()
            }),
        StoreType::Jks => jks(&bytes, password).map(|s| s.certs),
    };
    match certs {
        Ok(c) if c.is_empty() => Err(format!("trust store {path}: holds no certificate")),
        Ok(c) => Ok(c),
        Err(e) => Err(format!("trust store {path}: {e}")),
    }
}

fn pem_certs(bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("bad PEM certificate: {e}"))
}

fn pem_key(bytes: &[u8]) -> Result<KeyMaterial, String> {
    let text = String::from_utf8_lossy(bytes);
    if text.contains("ENCRYPTED PRIVATE KEY") {
        return Err("encrypted PEM private keys are not supported: store the key unencrypted (file permissions protect it) or use a PKCS12 or JKS key store".into());
    }
    let key = PrivateKeyDer::from_pem_slice(bytes)
        .map_err(|e| format!("no private key found in the PEM file: {e}"))?;
    let chain = pem_certs(bytes)?;
    if chain.is_empty() {
        return Err("no certificate found in the PEM file".into());
    }
    Ok(KeyMaterial { chain, key })
}

fn pkcs12_key(bytes: &[u8], password: &str) -> Result<KeyMaterial, String> {
    let a = p12_keystore::Pkcs12Archive::from_pkcs12(bytes, password)
        .map_err(|e| format!("not a PKCS12 file, or a wrong password: {e}"))?;
    let k = a
        .keys
        .first()
        .ok_or_else(|| "the PKCS12 file holds no private key".to_string())?;
    // The leaf is the certificate sharing the key's local key id; the rest follow.
    let leaf = a
        .certs
        .iter()
        .position(|c| {
            k.local_key_id.is_some()
                && c.local_key_id.as_deref() == k.local_key_id.as_ref().map(|i| &i.0[..])
        })
        .unwrap_or(0);
    if a.certs.is_empty() {
        return Err("the PKCS12 file holds no certificate for its key".into());
    }
    let mut chain = vec![CertificateDer::from(a.certs[leaf].cert.as_der().to_vec())];
    for (i, c) in a.certs.iter().enumerate() {
        if i != leaf && !c.trusted {
            chain.push(CertificateDer::from(c.cert.as_der().to_vec()));
        }
    }
    Ok(KeyMaterial {
        chain,
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(k.key.as_der().to_vec())),
    })
}

/// What a JKS file holds: its first private key entry and every certificate
/// (trusted entries and chains alike, in file order).
pub struct Jks {
    pub key: Option<KeyMaterial>,
    pub certs: Vec<CertificateDer<'static>>,
}

const JKS_MAGIC: u32 = 0xFEED_FEED;
/// Sun's KeyProtector algorithm (1.3.6.1.4.1.42.2.17.1.1), DER-encoded.
const KEY_PROTECTOR_OID: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0x2a, 0x02, 0x11, 0x01, 0x01];

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.b.len())
            .ok_or_else(|| "truncated JKS file".to_string())?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u16(&mut self) -> Result<u16, String> {
        let s = self.take(2)?;
        Ok(u16::from_be_bytes([s[0], s[1]]))
    }
    fn u32(&mut self) -> Result<u32, String> {
        let s = self.take(4)?;
        Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }
    /// `DataInput.readUTF`: a u16 length and (modified) UTF-8, kept as bytes.
    fn utf(&mut self) -> Result<&'a [u8], String> {
        let n = self.u16()? as usize;
        self.take(n)
    }
    /// A certificate: its type (version 2) and its u32-length DER.
    fn cert(&mut self, version: u32) -> Result<CertificateDer<'static>, String> {
        if version == 2 {
            let ty = self.utf()?;
            if ty != b"X.509" {
                return Err(format!(
                    "certificate type {:?} is not X.509",
                    String::from_utf8_lossy(ty)
                ));
            }
        }
        let n = self.u32()? as usize;
        Ok(CertificateDer::from(self.take(n)?.to_vec()))
    }
}

/// Java's password bytes for JKS: each UTF-16 unit, big-endian.
fn jks_password(password: &str) -> Vec<u8> {
    password.encode_utf16().flat_map(u16::to_be_bytes).collect()
}

/// Reads a JKS key store. The file's SHA-1 is checked against `password` (a wrong
/// password is reported as such), and the private key is decrypted with it (Java's
/// key password; ZooKeeper uses the store's password for both).
pub fn jks(bytes: &[u8], password: &str) -> Result<Jks, String> {
    let mut r = Reader { b: bytes, at: 0 };
    if r.u32()? != JKS_MAGIC {
        return Err(
            "not a JKS file (bad magic number; a PKCS12 file needs type PKCS12 or a .p12 name)"
                .into(),
        );
    }
    let version = r.u32()?;
    if version != 1 && version != 2 {
        return Err(format!("unsupported JKS version {version}"));
    }
    let count = r.u32()?;
    let pw = jks_password(password);
    let mut out = Jks {
        key: None,
        certs: Vec::new(),
    };
    for _ in 0..count {
        let tag = r.u32()?;
        let _alias = r.utf()?;
        let _date = r.take(8)?;
        match tag {
            1 => {
                let n = r.u32()? as usize;
                let protected = r.take(n)?;
                let chain_len = r.u32()?;
                let mut chain = Vec::new();
                for _ in 0..chain_len {
                    chain.push(r.cert(version)?);
                }
                out.certs.extend(chain.iter().cloned());
                if out.key.is_none() {
                    let key = jks_unprotect(protected, &pw)?;
                    out.key = Some(KeyMaterial {
                        chain,
                        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
                    });
                }
            }
            2 => out.certs.push(r.cert(version)?),
            3 => return Err("JCEKS secret key entries are not supported".into()),
            t => return Err(format!("unknown JKS entry tag {t}")),
        }
    }
    let body = &bytes[..r.at];
    let digest = r.take(20)?;
    let mut h = Sha1::new();
    h.update(&pw);
    h.update(b"Mighty Aphrodite");
    h.update(body);
    if h.finalize().as_slice() != digest {
        return Err("keystore was tampered with, or password was incorrect".into());
    }
    Ok(out)
}

/// One DER element: (tag, contents, rest).
fn der(b: &[u8]) -> Result<(u8, &[u8], &[u8]), String> {
    let bad = || "bad DER in a JKS private key entry".to_string();
    let (&tag, rest) = b.split_first().ok_or_else(bad)?;
    let (&l0, mut rest) = rest.split_first().ok_or_else(bad)?;
    let len = if l0 < 0x80 {
        l0 as usize
    } else {
        let n = (l0 & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return Err(bad());
        }
        let len = rest[..n].iter().fold(0usize, |a, &x| a << 8 | x as usize);
        rest = &rest[n..];
        len
    };
    if rest.len() < len {
        return Err(bad());
    }
    Ok((tag, &rest[..len], &rest[len..]))
}

/// Decrypts Sun's KeyProtector: an EncryptedPrivateKeyInfo whose data is
/// salt (20) || key XOR stream || SHA-1(password || key) (20), the stream being
/// SHA-1(password || previous), starting from the salt.
fn jks_unprotect(epki: &[u8], pw: &[u8]) -> Result<Vec<u8>, String> {
    let (tag, seq, _) = der(epki)?;
    let (atag, alg, rest) = der(seq)?;
    let (otag, oid, _) = der(alg)?;
    let (dtag, data, _) = der(rest)?;
    if tag != 0x30 || atag != 0x30 || otag != 0x06 || dtag != 0x04 {
        return Err("bad DER in a JKS private key entry".into());
    }
    if oid != KEY_PROTECTOR_OID {
        return Err(
            "the private key is not protected by Sun's JKS KeyProtector (a JCEKS store?)".into(),
        );
    }
    if data.len() < 40 {
        return Err("truncated JKS private key".into());
    }
    let (salt, rest) = data.split_at(20);
    let (enc, check) = rest.split_at(rest.len() - 20);
    let mut key = Vec::with_capacity(enc.len());
    let mut digest = salt.to_vec();
    for block in enc.chunks(20) {
        let mut h = Sha1::new();
        h.update(pw);
        h.update(&digest);
        digest = h.finalize().to_vec();
        key.extend(block.iter().zip(&digest).map(|(a, b)| a ^ b));
    }
    let mut h = Sha1::new();
    h.update(pw);
    h.update(&key);
    if h.finalize().as_slice() != check {
        return Err("cannot recover the private key: wrong password".into());
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_from_property_or_extension() {
        assert_eq!(store_type(Some("jks"), "x.p12"), Ok(StoreType::Jks));
        assert_eq!(store_type(Some("PKCS12"), "x"), Ok(StoreType::Pkcs12));
        assert_eq!(store_type(None, "a/b.pem"), Ok(StoreType::Pem));
        assert_eq!(store_type(Some(""), "a/b.p12"), Ok(StoreType::Pkcs12));
        assert_eq!(store_type(None, "a/b.jks"), Ok(StoreType::Jks));
        // Exact extension match, as KeyStoreFileType.fromFilename.
        assert!(store_type(None, "a/b.JKS").is_err());
        assert!(store_type(None, "a/b.pkcs12").is_err());
        assert!(store_type(Some("BCFKS"), "x").is_err());
        assert!(store_type(Some("PKCS11"), "x").is_err());
    }

    #[test]
    fn jks_rejects_garbage_without_panicking() {
        assert!(jks(b"", "x").is_err());
        assert!(jks(
            &[0xfe, 0xed, 0xfe, 0xed, 0, 0, 0, 2, 0xff, 0xff, 0xff, 0xff],
            "x"
        )
        .is_err());
        let mut rng = 7u64;
        for len in 0..200 {
            let mut b = vec![0xfe, 0xed, 0xfe, 0xed, 0, 0, 0, 2];
            for _ in 0..len {
                rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1);
                b.push((rng >> 33) as u8);
            }
            let _ = jks(&b, "pw");
        }
    }

    #[test]
    fn key_protector_round_trip() {
        // Protect a fake key the way Sun's KeyProtector does, then recover it.
        let pw = jks_password("changeit");
        let key: Vec<u8> = (0..77u8).collect();
        let salt = [9u8; 20];
        let mut enc = Vec::new();
        let mut digest = salt.to_vec();
        for block in key.chunks(20) {
            let mut h = Sha1::new();
            h.update(&pw);
            h.update(&digest);
            digest = h.finalize().to_vec();
            enc.extend(block.iter().zip(&digest).map(|(a, b)| a ^ b));
        }
        let mut h = Sha1::new();
        h.update(&pw);
        h.update(&key);
        let check = h.finalize();
        let mut data = salt.to_vec();
        data.extend(&enc);
        data.extend(check.as_slice());
        let mut alg = vec![0x06, KEY_PROTECTOR_OID.len() as u8];
        alg.extend(KEY_PROTECTOR_OID);
        alg.extend([0x05, 0x00]);
        let mut seq = vec![0x30, alg.len() as u8];
        seq.extend(alg);
        seq.extend([0x04, 0x81, data.len() as u8]);
        seq.extend(&data);
        let mut epki = vec![0x30, 0x81, seq.len() as u8];
        epki.extend(seq);
        assert_eq!(jks_unprotect(&epki, &pw), Ok(key));
        assert!(jks_unprotect(&epki, &jks_password("wrong")).is_err());
    }
}
