//! Client SASL authentication, as ZooKeeper 3.9.5's server does it (`ServerCnxnFactory
//! .configureSaslLogin`, `ZooKeeperSaslServer`, `ZooKeeperServer.processSasl`,
//! `SaslServerCallbackHandler`, `AuthenticationHelper`).
//!
//! Configuration ([`SaslSettings::from_properties`]), read once at start:
//! - `java.security.auth.login.config` names a JAAS file ([`jaas`]); its section
//!   `zookeeper.sasl.serverconfig` (default `Server`) turns SASL on. Its `user_<name>`
//!   options are the DIGEST-MD5 users ([`digest_md5`]); a `Krb5LoginModule` entry
//!   (principal, keyTab) makes the server speak GSSAPI instead ([`gssapi`]), as
//!   ZooKeeper does when its login subject holds a Kerberos principal. No file: SASL packets are answered OK with no
//!   token, as ZooKeeper answers them when it has no login (its NullPointerException
//!   path). A malformed or unreadable file stops the server with the file, line and
//!   reason; a file without the section leaves SASL off with a warning (ZooKeeper goes
//!   on silently).
//! - `authProvider.N=org.apache.zookeeper.server.auth.SASLAuthenticationProvider`
//!   registers the `sasl` ACL scheme ([`crate::acl::register_sasl_provider`]). ZooKeeper
//!   3.9.5 registers only `ip` and `digest` by itself: without the provider a client still
//!   authenticates and gets its `sasl:` id, but no `sasl:` ACL matches it and a create or
//!   setACL naming one is INVALIDACL.
//! - `allowSaslFailedClients`, `sessionRequireClientSASLAuth` (and the general
//!   `enforce.auth.enabled` / `enforce.auth.schemes`), `kerberos.removeHostFromPrincipal`,
//!   `kerberos.removeRealmFromPrincipal`, `superUser[.*]` and
//!   `SASLAuthenticationProvider.superPassword`, with ZooKeeper's meanings.
//!
//! Every key may come from zoo.cfg (with or without `zookeeper.`) or, as ZooKeeper's start
//! scripts pass them, as `-Dkey=value` in `SERVER_JVMFLAGS` / `JVMFLAGS` (see
//! [`crate::config::ConfigBuilder::jvm_flags`]); zoo.cfg wins, as it does in ZooKeeper.
//!
//! Per connection ([`SaslConn::process`]): each SASL packet is answered at once, outside
//! the request order (as ZooKeeper's `processPacket` does). Success adds `sasl:<id>` to the
//! connection's ids (and `super:` for a configured super user); a failure answers
//! AUTHFAILED (SESSIONCLOSEDREQUIRESASLAUTH when SASL is required) and closes the
//! connection, unless `allowSaslFailedClients=true` keeps it open unauthenticated.

pub mod digest_md5;
pub mod gssapi;
pub mod jaas;
pub mod kerberos_name;

use crate::proto::{Code, Id};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

/// The provider class that registers the `sasl` scheme.
pub const SASL_PROVIDER_CLASS: &str = "org.apache.zookeeper.server.auth.SASLAuthenticationProvider";
/// The providers ZooKeeper registers by itself; naming them changes nothing.
const BUILTIN_PROVIDER_CLASSES: [&str; 2] = [
    "org.apache.zookeeper.server.auth.DigestAuthenticationProvider",
    "org.apache.zookeeper.server.auth.IPAuthenticationProvider",
];

/// The server's login: the JAAS section that turned SASL on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Login {
    pub jaas_file: PathBuf,
    pub section: String,
    /// DIGEST-MD5 users: name -> password (`user_<name>` options).
    pub users: HashMap<String, String>,
    /// `SASLAuthenticationProvider.superPassword`: the password of user `super` (if
    /// `super` is among the users).
    pub super_password: Option<String>,
    /// A `Krb5LoginModule` entry's principal and keytab: the server then speaks GSSAPI,
    /// and only GSSAPI, as ZooKeeper does when its login subject has a principal.
    pub kerberos: Option<gssapi::Acceptor>,
}

/// Everything the shards need for SASL.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SaslSettings {
    /// `None`: no JAAS file, no SASL server.
    pub login: Option<Login>,
    /// `authProvider.N` names SASLAuthenticationProvider.
    pub provider: bool,
    /// `allowSaslFailedClients=true`.
    pub allow_failed: bool,
    /// The schemes a connection must have an id of before any request (besides auth and
    /// SASL packets) is served: `sessionRequireClientSASLAuth=true` (`sasl`) or
    /// `enforce.auth.enabled=true` with `enforce.auth.schemes`. Empty: not enforced.
    pub enforce_schemes: Vec<String>,
    pub names: kerberos_name::NameRules,
    /// `superUser` and `superUser.*`: SASL ids that are also super.
    pub super_users: Vec<String>,
}

/// Java's `Boolean.parseBoolean`.
fn java_bool(v: Option<&String>) -> bool {
    v.is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

impl SaslSettings {
    /// Reads the settings from the system properties a config produced
    /// ([`crate::config::Config::system_properties`]: every key as `zookeeper.<key>`),
    /// and the JAAS file they name. Returns warnings (provider classes RingKeeper does
    /// not have) with the settings.
    ///
    /// # Errors
    /// The JAAS file cannot be read or is malformed (file and line), or enforcement names a scheme with no provider (as
    /// ZooKeeper's `AuthenticationHelper` refuses to start).
    pub fn from_properties(
        props: &BTreeMap<String, String>,
    ) -> Result<(SaslSettings, Vec<String>), String> {
        let get = |k: &str| props.get(&format!("zookeeper.{k}"));
        let mut warnings = Vec::new();
        let mut s = SaslSettings::default();
        for (k, class) in props {
            if let Some(n) = k.strip_prefix("zookeeper.authProvider.") {
                let class = class.trim();
                if class == SASL_PROVIDER_CLASS {
                    s.provider = true;
                } else if !BUILTIN_PROVIDER_CLASSES.contains(&class) {
                    warnings.push(format!(
                        "authProvider.{n}={class}: RingKeeper has no such provider; the scheme stays unknown (ZooKeeper logs \"Problems loading\" and goes on)"
                    ));
                }
            }
        }
        s.allow_failed = java_bool(get("allowSaslFailedClients"));
        if java_bool(get("sessionRequireClientSASLAuth")) {
            s.enforce_schemes = vec!["sasl".into()];
        } else if java_bool(get("enforce.auth.enabled")) {
            s.enforce_schemes = get("enforce.auth.schemes")
                .map(|v| v.split(',').map(|x| x.trim().to_string()).collect())
                .unwrap_or_default();
            if s.enforce_schemes.is_empty() {
                return Err(
                    "zookeeper.enforce.auth.enabled is true zookeeper.enforce.auth.schemes must be  configured."
                        .into(),
                );
            }
        }
        for scheme in &s.enforce_schemes {
            let known = match scheme.as_str() {
                "ip" | "digest" => true,
                "sasl" => s.provider,
                _ => false,
            };
            if !known {
                return Err(format!(
                    "Authentication scheme {scheme} is not available.{}",
                    if scheme == "sasl" {
                        format!(" (sessionRequireClientSASLAuth needs authProvider.1={SASL_PROVIDER_CLASS})")
                    } else {
                        String::new()
                    }
                ));
            }
        }
        s.names.remove_host = get("kerberos.removeHostFromPrincipal").is_some_and(|v| v == "true");
        s.names.remove_realm =
            get("kerberos.removeRealmFromPrincipal").is_some_and(|v| v == "true");
        for (k, v) in props {
            if let Some(rest) = k.strip_prefix("zookeeper.superUser") {
                if rest.is_empty() || rest.starts_with('.') {
                    s.super_users.push(v.clone());
                }
            }
        }
        // The JAAS file: a JVM property in ZooKeeper (`-Djava.security.auth.login.config`);
        // from zoo.cfg it arrives prefixed.
        let jaas_file = props
            .get("zookeeper.java.security.auth.login.config")
            .or_else(|| props.get("java.security.auth.login.config"));
        let section_set = get("sasl.serverconfig");
        let section = section_set.map_or("Server", |v| v.as_str()).to_string();
        match jaas_file {
            None => {
                if section_set.is_some() {
                    // ZooKeeper: "No JAAS configuration section named ... was found ...
                    // But zookeeper.sasl.serverconfig was set."
                    return Err(format!(
                        "No JAAS configuration section named '{section}' was found. But zookeeper.sasl.serverconfig was set (and java.security.auth.login.config names no file)."
                    ));
                }
            }
            Some(path) => {
                let path = PathBuf::from(path.trim());
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    format!(
                        "java.security.auth.login.config: cannot read JAAS file {}: {e}",
                        path.display()
                    )
                })?;
                let cfg =
                    jaas::parse(&text).map_err(|e| format!("JAAS file {}: {e}", path.display()))?;
                let Some(sec) = cfg.section(&section) else {
                    // ZooKeeper goes on without SASL here (only a file Java cannot
                    // load at all stops it); say so, since it is surely a mistake.
                    warnings.push(format!(
                        "No JAAS configuration section named '{section}' was found in '{}': SASL is off",
                        path.display()
                    ));
                    return Ok((s, warnings));
                };
                let mut users = HashMap::new();
                let mut kerberos = None;
                for e in &sec.entries {
                    for (k, v) in &e.options {
                        if let Some(user) = k.strip_prefix("user_") {
                            users.insert(user.to_string(), v.clone());
                        }
                    }
                    if e.module.ends_with(".Krb5LoginModule") {
                        kerberos = Some(kerberos_acceptor(e, &section, &path)?);
                    }
                }
                if let Some(acc) = &kerberos {
                    // Log in now, as ZooKeeper's Login does at start: a missing library,
                    // keytab or key stops the server here, not at the first client.
                    gssapi::available()?;
                    gssapi::Server::new(acc).map_err(|e| {
                        format!("JAAS file {} section {section}: {e}", path.display())
                    })?;
                    s.names.default_realm = gssapi::default_realm();
                }
                s.login = Some(Login {
                    jaas_file: path,
                    section,
                    users,
                    super_password: get("SASLAuthenticationProvider.superPassword").cloned(),
                    kerberos,
                });
            }
        }
        Ok((s, warnings))
    }

    /// Whether SASL is required of every connection (`AuthenticationHelper
    /// .isSaslAuthRequired`).
    pub fn sasl_required(&self) -> bool {
        self.enforce_schemes.iter().any(|s| s == "sasl")
    }

    /// Whether a connection with `ids` may send requests (`AuthenticationHelper
    /// .enforceAuthentication`): always when nothing is enforced.
    pub fn allows(&self, ids: &[Id]) -> bool {
        self.enforce_schemes.is_empty()
            || ids
                .iter()
                .any(|id| self.enforce_schemes.contains(&id.scheme))
    }

    /// A user's password for DIGEST-MD5 (`SaslServerCallbackHandler`): unknown users
    /// have none; `super`'s is `superPassword` when set.
    fn password(&self, user: &str) -> Option<String> {
        let login = self.login.as_ref()?;
        let pw = login.users.get(user)?;
        if user == "super" {
            if let Some(sp) = &login.super_password {
                return Some(sp.clone());
            }
        }
        Some(pw.clone())
    }
}

/// The principal and keytab of a `Krb5LoginModule` entry.
fn kerberos_acceptor(
    e: &jaas::Entry,
    section: &str,
    path: &std::path::Path,
) -> Result<gssapi::Acceptor, String> {
    let at = || format!("JAAS file {} section {section}", path.display());
    let principal = e.option("principal").ok_or_else(|| {
        format!(
            "{}: Krb5LoginModule needs principal=\"zookeeper/host@REALM\"",
            at()
        )
    })?;
    // ZooKeeper splits the principal into protocol and host at '/' and '@'.
    let valid = principal
        .split_once('/')
        .is_some_and(|(svc, rest)| !svc.is_empty() && rest.contains('@'));
    if !valid {
        return Err(format!(
            "{}: principal {principal:?} is not of the form service/host@REALM",
            at()
        ));
    }
    if e.option("useKeyTab") != Some("true") {
        return Err(format!(
            "{}: Krb5LoginModule needs useKeyTab=true (a server cannot type a password)",
            at()
        ));
    }
    let keytab = e
        .option("keyTab")
        .ok_or_else(|| format!("{}: Krb5LoginModule needs keyTab=\"/path/to/keytab\"", at()))?;
    Ok(gssapi::Acceptor {
        principal: principal.to_string(),
        keytab: keytab.to_string(),
    })
}

/// What the shard does with a SASL packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Reply OK with this token (`None`: a null token); add these ids to the connection.
    Reply {
        token: Option<Vec<u8>>,
        new_ids: Vec<Id>,
    },
    /// Reply with this error (and a null token), then close the connection.
    FailAndClose(Code),
    /// Close the connection without a reply.
    Close,
}

/// One connection's SASL state: its mechanism server, created at the first packet.
#[derive(Debug, Default)]
pub struct SaslConn {
    digest: Option<digest_md5::Server>,
    gss: Option<gssapi::Server>,
}

/// A mechanism's step result, for the common tail of [`SaslConn::process`].
enum Outcome {
    Continue(Option<Vec<u8>>),
    Complete {
        token: Option<Vec<u8>>,
        user: String,
        authzid: Option<String>,
    },
}

impl SaslConn {
    /// Handles one SASL packet's token. The string is what to log, if anything.
    pub fn process(&mut self, s: &SaslSettings, token: &[u8]) -> (Answer, Option<String>) {
        if s.login.is_none() {
            return (
                Answer::Reply {
                    token: None,
                    new_ids: Vec::new(),
                },
                Some("SASL packet but no JAAS login is configured: answered with no token".into()),
            );
        }
        let outcome = match s.login.as_ref().and_then(|l| l.kerberos.as_ref()) {
            Some(acc) => self.gss_step(acc, token),
            None => {
                let server = self.digest.get_or_insert_with(digest_md5::Server::new);
                let password = |u: &str| s.password(u);
                server.step(token, &password).map(|st| match st {
                    digest_md5::Step::Continue(t) => Outcome::Continue(Some(t)),
                    digest_md5::Step::Complete {
                        token,
                        user,
                        authzid,
                    } => Outcome::Complete {
                        token: Some(token),
                        user,
                        authzid,
                    },
                })
            }
        };
        match outcome {
            Ok(Outcome::Continue(t)) => (
                Answer::Reply {
                    token: t,
                    new_ids: Vec::new(),
                },
                None,
            ),
            Ok(Outcome::Complete {
                token,
                user,
                authzid,
            }) => {
                let Some(id) = kerberos_name::authorized_id(&user, authzid.as_deref(), &s.names)
                else {
                    return (
                        Answer::Close,
                        Some(format!("Malformed Kerberos name: {user}")),
                    );
                };
                let mut new_ids = vec![Id {
                    scheme: "sasl".into(),
                    id: id.clone(),
                }];
                if s.super_users.contains(&id) {
                    new_ids.push(Id {
                        scheme: "super".into(),
                        id: String::new(),
                    });
                }
                (
                    Answer::Reply { token, new_ids },
                    Some(format!(
                        "adding SASL authorization for authorizationID: {id}"
                    )),
                )
            }
            Err(digest_md5::Fail::Broken(m)) => (Answer::Close, Some(m)),
            Err(digest_md5::Fail::Sasl(m)) => {
                let msg = format!("failed to SASL authenticate: {m}");
                if s.allow_failed && !s.sasl_required() {
                    (
                        Answer::Reply {
                            token: None,
                            new_ids: Vec::new(),
                        },
                        Some(format!(
                            "{msg}; keeping the connection (allowSaslFailedClients)"
                        )),
                    )
                } else if s.sasl_required() {
                    (
                        Answer::FailAndClose(Code::SessionClosedRequireSaslAuth),
                        Some(msg),
                    )
                } else {
                    (Answer::FailAndClose(Code::AuthFailed), Some(msg))
                }
            }
        }
    }

    /// One GSSAPI step; the server (and its acceptor credential) is made at the first.
    fn gss_step(
        &mut self,
        acc: &gssapi::Acceptor,
        token: &[u8],
    ) -> Result<Outcome, digest_md5::Fail> {
        if self.gss.is_none() {
            // The credential was checked at start; failing now (a keytab replaced
            // meanwhile) fails this login like any GSS error.
            self.gss = Some(gssapi::Server::new(acc).map_err(digest_md5::Fail::Sasl)?);
        }
        let server = self.gss.as_mut().expect("made above");
        server.step(token).map(|st| match st {
            gssapi::Step::Continue(t) => Outcome::Continue(Some(t)),
            gssapi::Step::Complete { peer, authzid } => Outcome::Complete {
                token: None,
                user: peer,
                authzid,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn jaas(text: &str) -> tempfile_path::TempFile {
        tempfile_path::TempFile::new(text)
    }

    /// A file under the system temp dir, removed on drop (no tempfile crate here).
    mod tempfile_path {
        pub struct TempFile(pub std::path::PathBuf);
        impl TempFile {
            pub fn new(text: &str) -> Self {
                let mut raw = [0u8; 8];
                super::digest_md5::fill_random(&mut raw);
                let name = format!("rk-jaas-{}.conf", u64::from_le_bytes(raw));
                let p = std::env::temp_dir().join(name);
                std::fs::write(&p, text).unwrap();
                TempFile(p)
            }
            pub fn path(&self) -> String {
                self.0.display().to_string()
            }
        }
        impl Drop for TempFile {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.0);
            }
        }
    }

    const SERVER: &str = "Server {\n org.apache.zookeeper.server.auth.DigestLoginModule required\n user_super=\"adminsecret\"\n user_bob=\"bobsecret\";\n};\n";

    #[test]
    fn no_file_no_login() {
        let (s, w) = SaslSettings::from_properties(&props(&[])).unwrap();
        assert_eq!(s, SaslSettings::default());
        assert!(w.is_empty());
    }

    #[test]
    fn users_come_from_the_named_section() {
        let f = jaas(&format!("{SERVER}Other {{ m required user_eve=\"e\"; }};"));
        let (s, _) = SaslSettings::from_properties(&props(&[(
            "zookeeper.java.security.auth.login.config",
            &f.path(),
        )]))
        .unwrap();
        let login = s.login.unwrap();
        assert_eq!(login.section, "Server");
        assert_eq!(login.users.len(), 2);
        assert_eq!(login.users["bob"], "bobsecret");
        let (s, _) = SaslSettings::from_properties(&props(&[
            ("java.security.auth.login.config", &f.path()),
            ("zookeeper.sasl.serverconfig", "Other"),
        ]))
        .unwrap();
        assert_eq!(s.login.unwrap().users["eve"], "e");
    }

    #[test]
    fn bad_files_stop_the_server_with_file_and_line() {
        let f = jaas("Server {\n m required\n user_a=\"x\"\n");
        let e = SaslSettings::from_properties(&props(&[(
            "zookeeper.java.security.auth.login.config",
            &f.path(),
        )]))
        .unwrap_err();
        assert!(e.contains(&f.path()) && e.contains("line 3"), "{e}");
        let f = jaas(SERVER);
        let (s, w) = SaslSettings::from_properties(&props(&[
            ("zookeeper.java.security.auth.login.config", &f.path()),
            ("zookeeper.sasl.serverconfig", "Nope"),
        ]))
        .unwrap();
        assert!(s.login.is_none());
        assert!(
            w[0].contains("No JAAS configuration section named 'Nope'"),
            "{w:?}"
        );
        let e = SaslSettings::from_properties(&props(&[(
            "zookeeper.java.security.auth.login.config",
            "/nonexistent/jaas.conf",
        )]))
        .unwrap_err();
        assert!(
            e.contains("cannot read JAAS file /nonexistent/jaas.conf"),
            "{e}"
        );
    }

    #[test]
    fn requiring_sasl_needs_the_provider() {
        let e = SaslSettings::from_properties(&props(&[(
            "zookeeper.sessionRequireClientSASLAuth",
            "true",
        )]))
        .unwrap_err();
        assert!(
            e.contains("Authentication scheme sasl is not available"),
            "{e}"
        );
        let (s, _) = SaslSettings::from_properties(&props(&[
            ("zookeeper.sessionRequireClientSASLAuth", "true"),
            ("zookeeper.authProvider.1", SASL_PROVIDER_CLASS),
        ]))
        .unwrap();
        assert!(s.provider && s.sasl_required());
        let ip = Id {
            scheme: "ip".into(),
            id: "127.0.0.1".into(),
        };
        let sasl = Id {
            scheme: "sasl".into(),
            id: "bob".into(),
        };
        assert!(!s.allows(std::slice::from_ref(&ip)));
        assert!(s.allows(&[ip, sasl]));
        let e =
            SaslSettings::from_properties(&props(&[("zookeeper.enforce.auth.enabled", "true")]))
                .unwrap_err();
        assert!(e.contains("enforce.auth.schemes must be"), "{e}");
    }

    fn settings(extra: &[(&str, &str)]) -> (SaslSettings, tempfile_path::TempFile) {
        let f = jaas(SERVER);
        let mut p = props(extra);
        p.insert("zookeeper.java.security.auth.login.config".into(), f.path());
        (SaslSettings::from_properties(&p).unwrap().0, f)
    }

    fn exchange(s: &SaslSettings, user: &str, pw: &str) -> (Answer, SaslConn) {
        let mut c = SaslConn::default();
        let Answer::Reply {
            token: Some(ch), ..
        } = c.process(s, b"").0
        else {
            panic!("no challenge")
        };
        let (resp, _) = digest_md5::client_response(&ch, user, pw, "cn", "zookeeper/zk-sasl-md5");
        (c.process(s, &resp).0, c)
    }

    #[test]
    fn success_adds_the_sasl_id_and_super_when_configured() {
        let (s, _f) = settings(&[("zookeeper.superUser", "super")]);
        let (a, _) = exchange(&s, "bob", "bobsecret");
        let Answer::Reply {
            new_ids,
            token: Some(_),
        } = a
        else {
            panic!("{a:?}")
        };
        assert_eq!(
            new_ids,
            vec![Id {
                scheme: "sasl".into(),
                id: "bob".into()
            }]
        );
        let (a, _) = exchange(&s, "super", "adminsecret");
        let Answer::Reply { new_ids, .. } = a else {
            panic!()
        };
        assert_eq!(new_ids.len(), 2);
        assert_eq!(new_ids[1].scheme, "super");
    }

    #[test]
    fn super_password_replaces_supers_file_password() {
        let (s, _f) = settings(&[(
            "zookeeper.SASLAuthenticationProvider.superPassword",
            "other",
        )]);
        assert_eq!(
            exchange(&s, "super", "adminsecret").0,
            Answer::FailAndClose(Code::AuthFailed)
        );
        assert!(matches!(
            exchange(&s, "super", "other").0,
            Answer::Reply { .. }
        ));
    }

    #[test]
    fn failures_answer_as_configured() {
        let (s, _f) = settings(&[]);
        assert_eq!(
            exchange(&s, "bob", "wrong").0,
            Answer::FailAndClose(Code::AuthFailed)
        );
        let (s, _f) = settings(&[("zookeeper.allowSaslFailedClients", "true")]);
        assert_eq!(
            exchange(&s, "bob", "wrong").0,
            Answer::Reply {
                token: None,
                new_ids: vec![]
            }
        );
        let (s, _f) = settings(&[
            ("zookeeper.allowSaslFailedClients", "true"),
            ("zookeeper.sessionRequireClientSASLAuth", "true"),
            ("zookeeper.authProvider.1", SASL_PROVIDER_CLASS),
        ]);
        assert_eq!(
            exchange(&s, "bob", "wrong").0,
            Answer::FailAndClose(Code::SessionClosedRequireSaslAuth)
        );
        // A second exchange after success fails like any other failure.
        let (s, _f) = settings(&[]);
        let (_, mut c) = exchange(&s, "bob", "bobsecret");
        assert_eq!(c.process(&s, b"").0, Answer::FailAndClose(Code::AuthFailed));
    }

    #[test]
    fn kerberos_sections_need_a_principal_and_a_keytab() {
        let krb = |opts: &str| {
            let f = jaas(&format!(
                "Server {{\n com.sun.security.auth.module.Krb5LoginModule required\n {opts};\n}};\n"
            ));
            SaslSettings::from_properties(&props(&[(
                "zookeeper.java.security.auth.login.config",
                &f.path(),
            )]))
            .unwrap_err()
        };
        let e = krb("useKeyTab=true keyTab=\"/k\"");
        assert!(e.contains("needs principal="), "{e}");
        let e = krb("useKeyTab=true keyTab=\"/k\" principal=\"zookeeper@EX\"");
        assert!(e.contains("not of the form service/host@REALM"), "{e}");
        let e = krb("keyTab=\"/k\" principal=\"zookeeper/h@EX\"");
        assert!(e.contains("useKeyTab=true"), "{e}");
        let e = krb("useKeyTab=true principal=\"zookeeper/h@EX\"");
        assert!(e.contains("needs keyTab="), "{e}");
        // A keytab that does not exist stops the server at start (the library is
        // loaded at run time; scripts/test.sh installs it).
        let e = krb("useKeyTab=true keyTab=\"/nonexistent.keytab\" principal=\"zookeeper/h@EX\"");
        assert!(
            e.contains("/nonexistent.keytab") || e.contains("cannot load"),
            "{e}"
        );
    }

    #[test]
    fn without_a_login_packets_get_no_token() {
        let s = SaslSettings::default();
        let mut c = SaslConn::default();
        assert_eq!(
            c.process(&s, b"anything").0,
            Answer::Reply {
                token: None,
                new_ids: vec![]
            }
        );
    }
}
