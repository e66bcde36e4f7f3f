//! The authorized id of a SASL client, as ZooKeeper's `SaslServerCallbackHandler
//! .handleAuthorizeCallback` derives it from the authentication id with its
//! `KerberosName` (a copy of Hadoop's) under the default `auth_to_local` rule:
//!
//! - a name matching `service[/host]@realm` is split; a name that does not match is a
//!   plain name unless it contains `@` (then `KerberosName` throws, and the JDK's
//!   exception kills the connection);
//! - the short name is the service part when the name has no host and no realm, or when
//!   its realm is the default realm; otherwise no rule applies and ZooKeeper keeps the
//!   client's authorization id unchanged (the authzid it sent, else its user name);
//! - then `/host` is appended unless `kerberos.removeHostFromPrincipal=true`, and
//!   `@realm` unless `kerberos.removeRealmFromPrincipal=true`.
//!
//! So `bob` stays `bob`, and `zkcli/client.example.com@EXAMPLE.COM` (default realm
//! EXAMPLE.COM) becomes `zkcli@EXAMPLE.COM` with removeHost, `zkcli/client.example.com`
//! with removeRealm, and `zkcli` with both.

/// A parsed principal: `service[/host][@realm]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KerberosName<'a> {
    pub service: &'a str,
    pub host: Option<&'a str>,
    pub realm: Option<&'a str>,
}

impl<'a> KerberosName<'a> {
    /// Splits `name` as `KerberosName(String)` does; `None` where Java throws
    /// ("Malformed Kerberos name").
    pub fn parse(name: &'a str) -> Option<KerberosName<'a>> {
        // ([^/@]*)(/([^/@]*))?@([^/@]*)
        if let Some((before, realm)) = name.split_once('@') {
            if realm.contains(['@', '/']) {
                return None;
            }
            let (service, host) = match before.split_once('/') {
                Some((s, h)) if !h.contains('/') => (s, Some(h)),
                Some(_) => return None,
                None => (before, None),
            };
            Some(KerberosName {
                service,
                host,
                realm: Some(realm),
            })
        } else {
            Some(KerberosName {
                service: name,
                host: None,
                realm: None,
            })
        }
    }
}

/// The canonicalisation options (`zookeeper.kerberos.*`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NameRules {
    /// The Kerberos default realm (krb5.conf's `default_realm`; empty when there is no
    /// Kerberos configuration, as in Java).
    pub default_realm: String,
    pub remove_host: bool,
    pub remove_realm: bool,
}

/// The id a client authenticated as `authn_id` (asking to act as `authz_id`, or as
/// itself) gets: see the module header. `None` where ZooKeeper's server throws.
pub fn authorized_id(authn_id: &str, authz_id: Option<&str>, rules: &NameRules) -> Option<String> {
    let k = KerberosName::parse(authn_id)?;
    let short = match (k.host, k.realm) {
        (None, None) => Some(k.service),
        (_, Some(realm)) if realm == rules.default_realm => Some(k.service),
        _ => None,
    };
    let Some(short) = short else {
        // NoMatchingRule: the authorized id stays the requested one.
        return Some(authz_id.unwrap_or(authn_id).to_string());
    };
    let mut id = short.to_string();
    if let Some(h) = k.host.filter(|_| !rules.remove_host) {
        id.push('/');
        id.push_str(h);
    }
    if let Some(r) = k.realm.filter(|_| !rules.remove_realm) {
        id.push('@');
        id.push_str(r);
    }
    Some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(host: bool, realm: bool) -> NameRules {
        NameRules {
            default_realm: "EXAMPLE.COM".into(),
            remove_host: host,
            remove_realm: realm,
        }
    }

    #[test]
    fn plain_names_stay_as_they_are() {
        assert_eq!(
            authorized_id("bob", None, &rules(true, true)).unwrap(),
            "bob"
        );
        assert_eq!(
            authorized_id("a/b", None, &rules(true, true)).unwrap(),
            "a/b"
        );
        // The authzid a DIGEST-MD5 client asks for does not change a plain name.
        assert_eq!(
            authorized_id("bob", Some("root"), &rules(false, false)).unwrap(),
            "bob"
        );
    }

    #[test]
    fn principals_lose_host_and_realm_on_request() {
        let p = "zkcli/client.example.com@EXAMPLE.COM";
        assert_eq!(authorized_id(p, None, &rules(false, false)).unwrap(), p);
        assert_eq!(
            authorized_id(p, None, &rules(true, false)).unwrap(),
            "zkcli@EXAMPLE.COM"
        );
        assert_eq!(
            authorized_id(p, None, &rules(false, true)).unwrap(),
            "zkcli/client.example.com"
        );
        assert_eq!(authorized_id(p, None, &rules(true, true)).unwrap(), "zkcli");
        assert_eq!(
            authorized_id("alice@EXAMPLE.COM", None, &rules(false, true)).unwrap(),
            "alice"
        );
    }

    #[test]
    fn a_foreign_realm_matches_no_rule() {
        let p = "alice@OTHER.ORG";
        assert_eq!(authorized_id(p, None, &rules(true, true)).unwrap(), p);
    }

    #[test]
    fn malformed_names_are_refused() {
        assert_eq!(KerberosName::parse("a@b@c"), None);
        assert_eq!(KerberosName::parse("a/b/c@R"), None);
        assert_eq!(KerberosName::parse("a@R/x"), None);
        assert!(authorized_id("a@b@c", None, &rules(false, false)).is_none());
    }
}
