//! ACL schemes and permission checks, as ZooKeeper's `ZooKeeperServer.checkACL`,
//! `PrepRequestProcessor.fixupACL` and the built-in providers (`server/auth/`) define
//! them. Owns: which ids match which ACL entries, ACL validation, the digest scheme's
//! hashing. Must not do I/O or know about connections: a session's ids arrive as a slice
//! (its `ip:<addr>` id, any `digest:` ids from addauth, and `super:` when it is the
//! super user).
//!
//! Schemes: `world` (only `world:anyone`), `auth` (in ACLs given to create/setACL only:
//! replaced by the caller's authenticated ids), `digest` (`user:base64(sha1(user:pw))`),
//! `ip` (`addr` or `addr/bits`, IPv4 or IPv6), `super` (a caller id, never an ACL entry:
//! it bypasses every check), `sasl` (the id a SASL login got, see `crate::sasl`; only
//! when `authProvider.N` registers SASLAuthenticationProvider).
//!
//! Permission each request needs (ZooKeeper 3.9.5, and 3.8.4+; "parent" means the
//! parent's ACL, otherwise the node's own):
//!
//! | request | permission | notes |
//! |---|---|---|
//! | exists | READ, only if the node exists | NONODE answers need no permission |
//! | getData | READ | |
//! | getChildren, getChildren2 | READ | |
//! | getAllChildrenNumber | READ | |
//! | getACL | READ or ADMIN (either) | without ADMIN, digest ids are answered as `user:x` ([`redact_for_get_acl`]) |
//! | getEphemerals | none | only the caller's own ephemerals |
//! | multiRead | per op, as getData / getChildren | |
//! | addWatch, setWatches, sync | none | |
//! | create (all kinds) | CREATE on parent | |
//! | delete | DELETE on parent | |
//! | setData | WRITE | |
//! | setACL | ADMIN | |
//! | check (in multi) | READ | |
//! | reconfig | WRITE on /zookeeper/config | |
//!
//! | a watch notification | READ on the node the event names | the node's ACL for NodeCreated/DataChanged/Deleted, the parent's for NodeChildrenChanged; a refused one-shot watch is still used up (3.9.2+, CVE-2024-23944) |
//!
//! An empty ACL list allows everything, as in ZooKeeper. With `skipACL=yes` nothing
//! is checked (reads and notifications included).

use crate::proto::{Acl, Code, Id};
use base64::Engine;
use sha1::{Digest, Sha1};
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether the `sasl` scheme's provider is registered (`authProvider.N` names
/// `SASLAuthenticationProvider`). Process-wide, like ZooKeeper's `ProviderRegistry`: set
/// once at start by [`register_sasl_provider`], before any connection. Without it a
/// `sasl:` id (which a SASL login always gets) matches no ACL, a `sasl:` ACL entry is
/// invalid, and whoAmI shows no user for it, as in ZooKeeper 3.9.5.
static SASL_PROVIDER: AtomicBool = AtomicBool::new(false);

/// Registers the `sasl` scheme's provider (see [`SASL_PROVIDER`]).
pub fn register_sasl_provider() {
    SASL_PROVIDER.store(true, Ordering::Relaxed);
}

/// Whether the `sasl` scheme's provider is registered.
pub fn sasl_provider() -> bool {
    SASL_PROVIDER.load(Ordering::Relaxed)
}

/// True if a caller with `ids` holds `perm` under `acl` (`ZooKeeperServer.checkACL`,
/// without `skipACL`, which the caller handles).
pub fn check(acl: &[Acl], perm: i32, ids: &[Id]) -> bool {
    if acl.is_empty() || is_super(ids) {
        return true;
    }
    acl.iter().filter(|a| a.perms & perm != 0).any(|a| {
        if a.id.scheme == "world" && a.id.id == "anyone" {
            return true;
        }
        ids.iter()
            .filter(|c| c.scheme == a.id.scheme)
            .any(|c| match a.id.scheme.as_str() {
                "digest" => c.id == a.id.id,
                "ip" => ip_matches(&c.id, &a.id.id),
                // SASLAuthenticationProvider.matches: a caller named "super" matches
                // every sasl entry.
                "sasl" => sasl_provider() && (c.id == "super" || c.id == a.id.id),
                // X509AuthenticationProvider.matches: the subject DN, exactly (its
                // superUser also gets a `super` id, which passed above).
                "x509" => c.id == a.id.id,
                // No provider: "auth", "world" with another id, "super" never match.
                _ => false,
            })
    })
}

/// True if `ids` include the super user (`super:` id), which bypasses every ACL.
pub fn is_super(ids: &[Id]) -> bool {
    ids.iter().any(|i| i.scheme == "super")
}

/// The digest scheme's id for a `user:password` string: `user:base64(sha1(user:password))`
/// (`DigestAuthenticationProvider.generateDigest`). With no ':' the whole string is the
/// user, and the hash is still over the whole string.
pub fn digest(user_password: &str) -> String {
    let user = user_password.split(':').next().unwrap_or("");
    let hash = Sha1::digest(user_password.as_bytes());
    format!(
        "{user}:{}",
        base64::engine::general_purpose::STANDARD.encode(hash)
    )
}

/// The ids an `addauth digest <auth>` grants (`DigestAuthenticationProvider
/// .handleAuthentication`): the digest id, and `super:` first when it equals the
/// configured `superDigest`. The bytes are read as UTF-8 with invalid sequences
/// replaced, as Java's `new String(bytes)` does. ZooKeeper never fails a digest addauth,
/// so this returns ids, not a `Result`.
pub fn auth_digest(auth: &[u8], super_digest: Option<&str>) -> Vec<Id> {
    let d = digest(&String::from_utf8_lossy(auth));
    let mut ids = Vec::with_capacity(2);
    if super_digest == Some(d.as_str()) {
        ids.push(Id {
            scheme: "super".into(),
            id: String::new(),
        });
    }
    ids.push(Id {
        scheme: "digest".into(),
        id: d,
    });
    ids
}

/// The ids an addauth packet grants, or AUTHFAILED for a scheme with no provider.
/// For "ip" the connection's own ip id is already among the session's ids, which is
/// all ZooKeeper's IP provider adds, so this returns no new id.
///
/// # Errors
/// `Code::AuthFailed` for any scheme other than "digest" and "ip".
pub fn authenticate(
    scheme: &str,
    auth: &[u8],
    super_digest: Option<&str>,
) -> Result<Vec<Id>, Code> {
    match scheme {
        "digest" => Ok(auth_digest(auth, super_digest)),
        "ip" => Ok(Vec::new()),
        _ => Err(Code::AuthFailed),
    }
}

/// Validates an ACL list from create or setACL and expands `auth` entries
/// (`PrepRequestProcessor.fixupACL`): duplicates removed (first kept), then each entry
/// must be `world:anyone`, an `auth` entry (replaced by one entry with its perms per
/// authenticated caller id: digest ids, not ip or super), or a valid `digest` or `ip`
/// id.
///
/// # Errors
/// `Code::InvalidAcl` for an empty list, an unknown scheme, an invalid id, or an `auth`
/// entry when the caller has no authenticated id.
pub fn fixup_acl(acl: &[Acl], ids: &[Id]) -> Result<Vec<Acl>, Code> {
    let mut uniq: Vec<&Acl> = Vec::with_capacity(acl.len());
    for a in acl {
        if !uniq.contains(&a) {
            uniq.push(a);
        }
    }
    if uniq.is_empty() {
        return Err(Code::InvalidAcl);
    }
    let mut out = Vec::with_capacity(uniq.len());
    for a in uniq {
        if a.id.scheme == "world" && a.id.id == "anyone" {
            out.push(a.clone());
        } else if a.id.scheme == "auth" {
            let before = out.len();
            for c in ids.iter().filter(|c| is_authenticated_scheme(&c.scheme)) {
                out.push(Acl {
                    perms: a.perms,
                    id: c.clone(),
                });
            }
            if out.len() == before {
                return Err(Code::InvalidAcl);
            }
        } else if is_valid_id(&a.id) {
            out.push(a.clone());
        } else {
            return Err(Code::InvalidAcl);
        }
    }
    Ok(out)
}

/// Schemes whose ids say who the user is (`AuthenticationProvider.isAuthenticated`):
/// digest, sasl (when registered) and x509 (a TLS client certificate) yes, ip no.
fn is_authenticated_scheme(scheme: &str) -> bool {
    scheme == "digest" || scheme == "x509" || (scheme == "sasl" && sasl_provider())
}

/// Whether an ACL entry's id is valid for its scheme (a provider's `isValid`); only the
/// digest, ip and x509 providers exist, so any other scheme is invalid here.
pub fn is_valid_id(id: &Id) -> bool {
    match id.scheme.as_str() {
        "digest" => java_split_count(&id.id, ':') == 2,
        "ip" => {
            let (addr, bits) = match id.id.split_once('/') {
                Some((a, b)) => (a, Some(b)),
                None => (id.id.as_str(), None),
            };
            let Some(a) = addr_bytes(addr) else {
                return false;
            };
            match bits {
                None => true,
                Some(b) => java_parse_int(b, 10).is_some_and(|n| n >= 0 && n <= a.len() as i64 * 8),
            }
        }
        // Any name `KerberosName` accepts (SASLAuthenticationProvider.isValid).
        "sasl" => {
            sasl_provider() && crate::sasl::kerberos_name::KerberosName::parse(&id.id).is_some()
        }
        // X509AuthenticationProvider.isValid: an X.500 name (`new X500Principal(id)`);
        // checked loosely: some `type=value`.
        "x509" => id.id.contains('=') && !id.id.starts_with('='),
        _ => false,
    }
}

/// The user a caller id names for whoAmI and the audit log (`AuthUtil.getUser`): the
/// digest user without its hash, the id itself for ip and a registered sasl, none
/// (empty) for schemes without a provider.
pub fn user_name(id: &Id) -> String {
    match id.scheme.as_str() {
        "digest" => id.id.split(':').next().unwrap_or("").to_string(),
        "sasl" if !sasl_provider() => String::new(),
        _ => id.id.clone(),
    }
}

/// The getACL answer for a caller without ADMIN: digest ids become `user:x`, so the
/// password hash is not disclosed (`FinalRequestProcessor`, getACL).
pub fn redact_for_get_acl(acl: &[Acl]) -> Vec<Acl> {
    acl.iter()
        .map(|a| {
            if a.id.scheme == "digest" {
                let user = a.id.id.split(':').next().unwrap_or("");
                Acl {
                    perms: a.perms,
                    id: Id {
                        scheme: "digest".into(),
                        id: format!("{user}:x"),
                    },
                }
            } else {
                a.clone()
            }
        })
        .collect()
}

/// `IPAuthenticationProvider.matches`: the caller's address `id` against `addr[/bits]`.
pub fn ip_matches(id: &str, acl_expr: &str) -> bool {
    let (addr, bits) = match acl_expr.split_once('/') {
        Some((a, b)) => (a, Some(b)),
        None => (acl_expr, None),
    };
    let Some(mut acl_addr) = addr_bytes(addr) else {
        return false;
    };
    let bits = match bits {
        None => acl_addr.len() * 8,
        Some(b) => match java_parse_int(b, 10) {
            Some(n) if n >= 0 && n <= acl_addr.len() as i64 * 8 => n as usize,
            _ => return false,
        },
    };
    let Some(mut remote) = addr_bytes(id) else {
        return false;
    };
    mask(&mut acl_addr, bits);
    mask(&mut remote, bits);
    remote == acl_addr
}

/// Keeps the first `bits` bits.
fn mask(b: &mut [u8], bits: usize) {
    for (i, byte) in b.iter_mut().enumerate() {
        let keep = bits.saturating_sub(i * 8).min(8);
        *byte &= if keep == 0 { 0 } else { 0xffu8 << (8 - keep) };
    }
}

/// An address as bytes: IPv6 if it contains ':', IPv4 if it contains '.', else none.
fn addr_bytes(addr: &str) -> Option<Vec<u8>> {
    if addr.contains(':') {
        v6_bytes(addr).map(|b| b.to_vec())
    } else if addr.contains('.') {
        v4_bytes(addr).map(|b| b.to_vec())
    } else {
        None
    }
}

fn v4_bytes(addr: &str) -> Option<[u8; 4]> {
    let parts: Vec<&str> = addr.split('.').collect();
    if parts.len() != 4 {
        return None;
    }
    let mut b = [0u8; 4];
    for (i, p) in parts.iter().enumerate() {
        let v = java_parse_int(p, 10)?;
        if !(0..=255).contains(&v) {
            return None;
        }
        b[i] = v as u8;
    }
    Some(b)
}

/// `IPAuthenticationProvider.parseV6addr`: at most one "::", eight groups without it and
/// fewer than eight with it, each group 1 to 4 hex digits.
fn v6_bytes(addr: &str) -> Option<[u8; 16]> {
    let parts: Vec<&str> = addr.split("::").collect();
    let (head, tail): (Vec<&str>, Vec<&str>) = match parts.as_slice() {
        [all] => {
            let segs: Vec<&str> = all.split(':').collect();
            if segs.len() != 8 {
                return None;
            }
            (segs, Vec::new())
        }
        [a, b] => {
            let head = if a.is_empty() {
                Vec::new()
            } else {
                a.split(':').collect()
            };
            let tail = if b.is_empty() {
                Vec::new()
            } else {
                b.split(':').collect()
            };
            if head.len() + tail.len() >= 8 {
                return None;
            }
            (head, tail)
        }
        _ => return None,
    };
    let mut out = [0u8; 16];
    let put = |out: &mut [u8; 16], start: usize, segs: &[&str]| -> Option<()> {
        for (k, s) in segs.iter().enumerate() {
            if s.is_empty() || s.chars().count() > 4 {
                return None;
            }
            let v = java_parse_int(s, 16)?;
            out[start + 2 * k] = ((v >> 8) & 0xff) as u8;
            out[start + 2 * k + 1] = (v & 0xff) as u8;
        }
        Some(())
    };
    put(&mut out, 0, &head)?;
    put(&mut out, 16 - tail.len() * 2, &tail)?;
    Some(out)
}

/// Java's `Integer.parseInt(s, radix)`: an optional sign, then at least one digit, and
/// the value must fit an `int`.
fn java_parse_int(s: &str, radix: u32) -> Option<i64> {
    let (neg, digits) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() {
        return None;
    }
    let mut v: i64 = 0;
    for c in digits.chars() {
        v = v * i64::from(radix) + i64::from(c.to_digit(radix)?);
        if v > i64::from(i32::MAX) + 1 {
            return None;
        }
    }
    let v = if neg { -v } else { v };
    (i64::from(i32::MIN)..=i64::from(i32::MAX))
        .contains(&v)
        .then_some(v)
}

/// The number of parts Java's `s.split(String.valueOf(sep))` returns: trailing empty
/// parts dropped, but an empty string is one part.
fn java_split_count(s: &str, sep: char) -> usize {
    if s.is_empty() {
        return 1;
    }
    let parts: Vec<&str> = s.split(sep).collect();
    let trailing_empty = parts.iter().rev().take_while(|p| p.is_empty()).count();
    // All parts empty (e.g. ":::") gives an empty array in Java.
    parts.len() - trailing_empty
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::perms;

    fn id(scheme: &str, id: &str) -> Id {
        Id {
            scheme: scheme.into(),
            id: id.into(),
        }
    }
    fn acl(p: i32, scheme: &str, i: &str) -> Acl {
        Acl {
            perms: p,
            id: id(scheme, i),
        }
    }

    #[test]
    fn digest_matches_zookeeper() {
        // From ZooKeeper's documentation and DigestAuthenticationProvider.main:
        // super:test -> super:D/InIHSb7yEEbrWz8b9l71RjZJU=
        assert_eq!(digest("super:test"), "super:D/InIHSb7yEEbrWz8b9l71RjZJU=");
        assert_eq!(digest("user").split(':').next(), Some("user"));
    }

    #[test]
    fn auth_digest_adds_super_for_the_super_digest() {
        let ids = auth_digest(b"super:test", Some("super:D/InIHSb7yEEbrWz8b9l71RjZJU="));
        assert_eq!(ids[0], id("super", ""));
        assert_eq!(ids[1], id("digest", "super:D/InIHSb7yEEbrWz8b9l71RjZJU="));
        assert_eq!(
            auth_digest(b"bob:pw", Some("super:D/InIHSb7yEEbrWz8b9l71RjZJU=")).len(),
            1
        );
        assert_eq!(authenticate("kerberos", b"x", None), Err(Code::AuthFailed));
    }

    #[test]
    fn check_follows_checkacl() {
        let bob = digest("bob:pw");
        let a = vec![
            acl(perms::READ, "digest", &bob),
            acl(perms::WRITE, "ip", "10.0.0.0/8"),
        ];
        let bob_ids = vec![id("ip", "127.0.0.1"), id("digest", &bob)];
        assert!(check(&a, perms::READ, &bob_ids));
        assert!(!check(&a, perms::WRITE, &bob_ids));
        assert!(check(&a, perms::WRITE, &[id("ip", "10.1.2.3")]));
        assert!(!check(&a, perms::ADMIN, &[id("ip", "10.1.2.3")]));
        assert!(
            check(&a, perms::ADMIN, &[id("super", "")]),
            "super bypasses"
        );
        assert!(check(&[], perms::ADMIN, &[]), "empty ACL allows");
        let world = vec![acl(perms::READ, "world", "anyone")];
        assert!(check(&world, perms::READ, &[]));
        assert!(!check(&world, perms::WRITE, &[]));
        // getACL needs READ or ADMIN.
        assert!(check(&world, perms::READ | perms::ADMIN, &[]));
        // An ACL entry with scheme auth or world:other never matches.
        assert!(!check(
            &[acl(perms::ALL, "auth", "")],
            perms::READ,
            &[id("auth", "")]
        ));
    }

    #[test]
    fn ip_matching_ipv4_and_ipv6() {
        assert!(ip_matches("127.0.0.1", "127.0.0.1"));
        assert!(ip_matches("127.0.0.1", "127.0.0.0/8"));
        assert!(!ip_matches("128.0.0.1", "127.0.0.0/8"));
        assert!(ip_matches("10.255.1.1", "10.254.0.0/15"));
        assert!(!ip_matches("10.253.1.1", "10.254.0.0/15"));
        assert!(ip_matches("1.2.3.4", "0.0.0.0/0"));
        assert!(!ip_matches("1.2.3.4", "1.2.3.4/33"));
        assert!(ip_matches("0:0:0:0:0:0:0:1", "::1"));
        assert!(ip_matches("fe80::1:2", "fe80::/64"));
        assert!(!ip_matches("fe81::1", "fe80::/16"));
        assert!(!ip_matches("::1", "0.0.0.1"), "families differ");
        assert!(!ip_matches("1.2.3", "1.2.3.0/24"));
    }

    #[test]
    fn ids_are_validated_like_the_providers() {
        assert!(is_valid_id(&id("digest", "u:hash")));
        assert!(is_valid_id(&id("digest", ":hash")));
        assert!(!is_valid_id(&id("digest", "u:")));
        assert!(!is_valid_id(&id("digest", "u")));
        assert!(!is_valid_id(&id("digest", "a:b:c")));
        assert!(is_valid_id(&id("ip", "1.2.3.4")));
        assert!(is_valid_id(&id("ip", "1.2.3.4/0")));
        assert!(is_valid_id(&id("ip", "::1/128")));
        assert!(!is_valid_id(&id("ip", "::1/129")));
        assert!(!is_valid_id(&id("ip", "1.2.3.256")));
        assert!(!is_valid_id(&id("ip", "1.2.3.4/x")));
        assert!(!is_valid_id(&id("ip", "localhost")));
        assert!(!is_valid_id(&id("ip", "1:2:3:4:5:6:7:8:9")));
        assert!(!is_valid_id(&id("ip", "1::2::3")));
        assert!(!is_valid_id(&id("ip", "12345::")));
        assert!(
            !is_valid_id(&id("world", "anyone")),
            "world is checked by fixup, not a provider"
        );
        assert!(!is_valid_id(&id("super", "")));
    }

    #[test]
    fn fixup_expands_auth_dedups_and_rejects() {
        let bob = id("digest", &digest("bob:pw"));
        let ip = id("ip", "127.0.0.1");
        let world = acl(perms::ALL, "world", "anyone");
        assert_eq!(
            fixup_acl(&[world.clone(), world.clone()], &[]),
            Ok(vec![world.clone()])
        );
        assert_eq!(
            fixup_acl(
                &[acl(perms::READ, "auth", "ignored")],
                &[ip.clone(), bob.clone()]
            ),
            Ok(vec![Acl {
                perms: perms::READ,
                id: bob.clone()
            }])
        );
        assert_eq!(
            fixup_acl(&[acl(perms::READ, "auth", "")], &[ip]),
            Err(Code::InvalidAcl)
        );
        assert_eq!(fixup_acl(&[], &[]), Err(Code::InvalidAcl));
        assert_eq!(
            fixup_acl(&[acl(perms::ALL, "world", "nobody")], &[]),
            Err(Code::InvalidAcl)
        );
        assert_eq!(
            fixup_acl(&[acl(perms::ALL, "super", "")], &[]),
            Err(Code::InvalidAcl)
        );
        // x509 ids are X.500 names; whether the provider exists is prep's question.
        assert!(fixup_acl(&[acl(perms::ALL, "x509", "CN=a")], &[]).is_ok());
        assert_eq!(
            fixup_acl(&[acl(perms::ALL, "x509", "no equals sign")], &[]),
            Err(Code::InvalidAcl)
        );
    }

    #[test]
    fn get_acl_redaction_hides_digest_hashes() {
        let a = vec![
            acl(perms::ALL, "digest", "bob:abc="),
            acl(perms::READ, "world", "anyone"),
        ];
        let r = redact_for_get_acl(&a);
        assert_eq!(r[0].id.id, "bob:x");
        assert_eq!(r[1], a[1]);
    }

    #[test]
    fn java_int_parsing_edge_cases() {
        assert_eq!(java_parse_int("+7", 10), Some(7));
        assert_eq!(java_parse_int("-0", 10), Some(0));
        assert_eq!(java_parse_int("", 10), None);
        assert_eq!(java_parse_int("-", 10), None);
        assert_eq!(java_parse_int("ffff", 16), Some(0xffff));
        assert_eq!(java_parse_int("2147483648", 10), None);
        assert_eq!(java_split_count(":::", ':'), 0);
        assert_eq!(java_split_count("", ':'), 1);
    }
}
