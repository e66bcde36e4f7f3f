//! TLS on the client port: the `ssl.*` settings as ZooKeeper reads them, turned into a
//! rustls server configuration, and the record layer of every TLS connection.
//!
//! Design: the record layer sits between the io_uring loop and the shard. The loop
//! hands the driver the bytes a connection received (its provided buffer); for a TLS
//! connection the driver feeds them to rustls' `ServerConnection::read_tls` from that
//! slice, drains the decrypted bytes into one scratch buffer, and hands those to the
//! shard, which sees the same byte stream a plaintext connection gives it. Replies go
//! the other way: the shard's `Net::send` writes the plaintext into rustls and the
//! records rustls produces (`write_tls`) are queued on the connection's output buffer.
//! No socket is ever read or written by rustls: there is no extra thread, no blocking
//! and no second buffer per connection beside rustls' own.
//!
//! Plaintext connections pay nothing when no TLS port is configured (the driver holds
//! no [`TlsConns`]), and one hash lookup per receive and per send otherwise.
//!
//! With `client.portUnification=true` a connection on the plaintext port is told apart by its
//! first byte, as Netty's `SslHandler.isEncrypted` does for ZooKeeper's dual-mode
//! handler: 0x16 starts a TLS handshake record; a plaintext client's first frame starts
//! with 0x00 (a length below 16 MiB) or a four-letter word's letter.
//!
//! Why rustls with the ring provider: rustls is the mainstream TLS stack in Rust and
//! works on in-memory buffers; ring builds with the C compiler every build machine has,
//! where aws-lc-rs also needs cmake (and Go or NASM for some targets).

pub mod dn;
pub mod store;

use crate::proto::Id;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConnection, SupportedCipherSuite, SupportedProtocolVersion};
use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;

/// `ssl.clientAuth`: whether the server asks for a client certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// Required (ZooKeeper's default).
    Need,
    /// Asked for; a client without one is served, unauthenticated.
    Want,
    None,
}

/// The `ssl.*` settings of one side (client port: prefix `zookeeper.ssl.`), read from
/// the system properties zoo.cfg set.
pub struct TlsSettings {
    pub server: Arc<rustls::ServerConfig>,
    pub client_auth: ClientAuth,
    /// `X509AuthenticationProvider.superUser`: a client whose certificate's subject is
    /// this DN is also `super`.
    pub super_user: Option<String>,
}

fn prop<'a>(props: &'a BTreeMap<String, String>, prefix: &str, key: &str) -> Option<&'a str> {
    props.get(&format!("{prefix}{key}")).map(String::as_str)
}

/// `getPasswordFromConfigPropertyOrFile`: the password, else the content of the file
/// `passwordPath` names (its trailing line end dropped), else empty.
fn password(props: &BTreeMap<String, String>, prefix: &str, store: &str) -> Result<String, String> {
    if let Some(p) = prop(props, prefix, &format!("{store}.password")) {
        return Ok(p.to_string());
    }
    match prop(props, prefix, &format!("{store}.passwordPath")) {
        Some(path) if !path.is_empty() => std::fs::read_to_string(path)
            .map(|s| s.trim_end_matches(['\r', '\n']).to_string())
            .map_err(|e| format!("{prefix}{store}.passwordPath: cannot read {path}: {e}")),
        _ => Ok(String::new()),
    }
}

/// Java's cipher suite names that rustls (ring) implements, and its suite for each.
fn suite_by_java_name(name: &str) -> Option<SupportedCipherSuite> {
    use rustls::crypto::ring::cipher_suite as cs;
    Some(match name {
        "TLS_AES_128_GCM_SHA256" => cs::TLS13_AES_128_GCM_SHA256,
        "TLS_AES_256_GCM_SHA384" => cs::TLS13_AES_256_GCM_SHA384,
        "TLS_CHACHA20_POLY1305_SHA256" => cs::TLS13_CHACHA20_POLY1305_SHA256,
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" => cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384" => cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" => cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384" => cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256" => {
            cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
        }
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256" => {
            cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
        }
        _ => return None,
    })
}

/// ZooKeeper's default list on Java 9 and later (`X509Util.DEFAULT_CIPHERS_JAVA9`): the
/// ECDHE GCM suites, the CBC ones (which rustls does not implement), the TLS 1.3 ones.
const DEFAULT_SUITES: [&str; 7] = [
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_AES_256_GCM_SHA384",
    "TLS_AES_128_GCM_SHA256",
    "TLS_CHACHA20_POLY1305_SHA256",
];

/// `ssl.ciphersuites` (comma-separated Java names) to rustls suites; an unknown or
/// unimplemented name is an error naming it.
pub fn cipher_suites(list: Option<&str>) -> Result<Vec<SupportedCipherSuite>, String> {
    let names: Vec<&str> = match list {
        Some(l) => l
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect(),
        None => DEFAULT_SUITES.to_vec(),
    };
    let mut out = Vec::new();
    for n in names {
        match suite_by_java_name(n) {
            Some(s) => out.push(s),
            None if n.starts_with("TLS_") || n.starts_with("SSL_") => {
                return Err(format!(
                    "cipher suite {n} is not supported: RingKeeper (rustls) implements only the AEAD suites with ECDHE key exchange: {}",
                    DEFAULT_SUITES.join(", ")
                        + ", TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"
                ))
            }
            None => return Err(format!("unknown cipher suite {n:?}")),
        }
    }
    if out.is_empty() {
        return Err("no cipher suite is enabled".into());
    }
    Ok(out)
}

fn version(name: &str) -> Result<&'static SupportedProtocolVersion, String> {
    match name {
        "TLSv1.3" => Ok(&rustls::version::TLS13),
        "TLSv1.2" => Ok(&rustls::version::TLS12),
        "TLSv1.1" | "TLSv1" | "SSLv3" | "SSLv2Hello" => Err(format!(
            "protocol {name} is not supported (only TLSv1.2 and TLSv1.3)"
        )),
        _ => Err(format!("unknown protocol {name:?}")),
    }
}

/// `ssl.protocol` and `ssl.enabledProtocols`: the versions offered. Without
/// enabledProtocols Java enables the protocol's default set: TLSv1.3 (Java 11's default
/// `ssl.protocol`) and `TLS` give 1.3 and 1.2, TLSv1.2 gives 1.2.
pub fn protocol_versions(
    protocol: Option<&str>,
    enabled: Option<&str>,
) -> Result<Vec<&'static SupportedProtocolVersion>, String> {
    if let Some(list) = enabled {
        let v = list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(version)
            .collect::<Result<Vec<_>, _>>()?;
        if v.is_empty() {
            return Err("ssl.enabledProtocols names no protocol".into());
        }
        return Ok(v);
    }
    match protocol.unwrap_or("TLSv1.3") {
        "TLSv1.3" | "TLS" => Ok(vec![&rustls::version::TLS13, &rustls::version::TLS12]),
        p => Ok(vec![version(p)?]),
    }
}

/// `ClientAuth.fromPropertyValue`: empty means NEED; otherwise the name, any case.
pub fn client_auth(v: Option<&str>) -> Result<ClientAuth, String> {
    match v.map(str::trim).unwrap_or("").to_ascii_uppercase().as_str() {
        "" | "NEED" => Ok(ClientAuth::Need),
        "WANT" => Ok(ClientAuth::Want),
        "NONE" => Ok(ClientAuth::None),
        _ => Err(format!("{:?} is not need, want or none", v.unwrap_or(""))),
    }
}

/// Builds the client port's TLS configuration from the `zookeeper.ssl.*` properties.
/// Every problem is an error naming the key (the server does not start without it).
pub fn client_settings(props: &BTreeMap<String, String>) -> Result<TlsSettings, String> {
    settings(props, "zookeeper.ssl.")
}

fn settings(props: &BTreeMap<String, String>, prefix: &str) -> Result<TlsSettings, String> {
    let key = |k: &str| format!("{prefix}{k}");
    if let Some(p) = prop(props, prefix, "authProvider") {
        if p != "x509" {
            return Err(format!(
                "{}={p}: only the x509 provider exists here",
                key("authProvider")
            ));
        }
    }
    if let Some(c) = prop(props, prefix, "context.supplier.class") {
        return Err(format!(
            "{}={c}: Java SSLContext suppliers cannot run here; give the stores instead",
            key("context.supplier.class")
        ));
    }
    let suites = cipher_suites(prop(props, prefix, "ciphersuites"))
        .map_err(|e| format!("{}: {e}", key("ciphersuites")))?;
    let versions = protocol_versions(
        prop(props, prefix, "protocol"),
        prop(props, prefix, "enabledProtocols"),
    )
    .map_err(|e| format!("{}/{}: {e}", key("protocol"), key("enabledProtocols")))?;
    let auth = client_auth(prop(props, prefix, "clientAuth"))
        .map_err(|e| format!("{}: {e}", key("clientAuth")))?;

    let ks_path = prop(props, prefix, "keyStore.location").unwrap_or("");
    if ks_path.is_empty() {
        return Err(format!(
            "{} is not set: a TLS port needs the server's certificate and private key",
            key("keyStore.location")
        ));
    }
    let ks_type = store::store_type(prop(props, prefix, "keyStore.type"), ks_path)
        .map_err(|e| format!("{}: {e}", key("keyStore.type")))?;
    let km = store::load_key_store(ks_path, &password(props, prefix, "keyStore")?, ks_type)?;

    let ts_path = prop(props, prefix, "trustStore.location").unwrap_or("");
    let roots = if ts_path.is_empty() {
        None
    } else {
        let ts_type = store::store_type(prop(props, prefix, "trustStore.type"), ts_path)
            .map_err(|e| format!("{}: {e}", key("trustStore.type")))?;
        let certs =
            store::load_trust_store(ts_path, &password(props, prefix, "trustStore")?, ts_type)?;
        let mut roots = RootCertStore::empty();
        for c in certs {
            roots
                .add(c)
                .map_err(|e| format!("trust store {ts_path}: a certificate is unusable: {e}"))?;
        }
        Some(Arc::new(roots))
    };

    // rustls 0.23.48 deprecates ring's provider for lacking post-quantum key exchange
    // (X25519MLKEM768, which only aws-lc-rs has); ZooKeeper's Java clients offer none
    // either, and ring keeps the build free of cmake.
    #[allow(deprecated)]
    let base = rustls::crypto::ring::default_provider();
    let provider = Arc::new(CryptoProvider {
        cipher_suites: suites,
        ..base
    });
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| {
            format!(
                "{} and {} do not fit: {e}",
                key("ciphersuites"),
                key("enabledProtocols")
            )
        })?;
    let builder = match (auth, roots) {
        (ClientAuth::None, _) => builder.with_no_client_auth(),
        (_, None) => {
            return Err(format!(
                "{} is not set: {}={} needs it to verify client certificates (or set {}=none)",
                key("trustStore.location"),
                key("clientAuth"),
                if auth == ClientAuth::Need {
                    "need"
                } else {
                    "want"
                },
                key("clientAuth")
            ))
        }
        (_, Some(roots)) => {
            let v = WebPkiClientVerifier::builder_with_provider(roots, provider);
            let v = if auth == ClientAuth::Want {
                v.allow_unauthenticated()
            } else {
                v
            };
            builder.with_client_cert_verifier(
                v.build()
                    .map_err(|e| format!("cannot verify client certificates: {e}"))?,
            )
        }
    };
    let server = builder
        .with_single_cert(km.chain, km.key)
        .map_err(|e| format!("key store {ks_path}: the key does not fit its certificate: {e}"))?;
    Ok(TlsSettings {
        server: Arc::new(server),
        client_auth: auth,
        super_user: props
            .get("zookeeper.X509AuthenticationProvider.superUser")
            .cloned(),
    })
}

/// TLS between servers (`sslQuorum=true`, the `ssl.quorum.*` keys): both ends of every
/// election and quorum connection authenticate with the quorum key store and verify
/// the other against the quorum trust store.
///
/// With `sslQuorumReloadCertFiles=true` the key and trust store files are watched, as
/// ZooKeeper's FileChangeWatcher does: each new connection (at most once a second)
/// compares their modification times with those of the last load, and a change
/// rebuilds both configurations from the files, so a renewed certificate or a new CA
/// is used without a restart. Connections already open keep their session. A rebuild
/// that fails (a file half written, a wrong password) is logged and the previous
/// configuration stays in force until the files change again.
pub struct QuorumTls {
    current: std::sync::Mutex<QuorumConfigs>,
    reload: Option<Reload>,
}

struct QuorumConfigs {
    /// For connections this server accepts: a client certificate is required unless
    /// `ssl.quorum.clientAuth` says otherwise; no session tickets (the dialling side
    /// of an election connection reads nothing, and takes anything it reads for the
    /// peer hanging up).
    server: Arc<rustls::ServerConfig>,
    /// For connections this server dials: presents the same certificate.
    client: Arc<rustls::ClientConfig>,
}

struct Reload {
    props: BTreeMap<String, String>,
    files: Vec<std::path::PathBuf>,
    /// When the files were last looked at, and their modification times then.
    seen: std::sync::Mutex<(std::time::Instant, Vec<Option<std::time::SystemTime>>)>,
}

/// How often, at most, a new connection looks at the store files.
const RELOAD_CHECK: std::time::Duration = std::time::Duration::from_secs(1);

fn mtimes(files: &[std::path::PathBuf]) -> Vec<Option<std::time::SystemTime>> {
    files
        .iter()
        .map(|f| std::fs::metadata(f).and_then(|m| m.modified()).ok())
        .collect()
}

impl QuorumTls {
    /// The configuration for a connection this server accepts.
    pub fn server(&self) -> Arc<rustls::ServerConfig> {
        self.check_files();
        self.current
            .lock()
            .expect("quorum TLS poisoned")
            .server
            .clone()
    }

    /// The configuration for a connection this server dials.
    pub fn client(&self) -> Arc<rustls::ClientConfig> {
        self.check_files();
        self.current
            .lock()
            .expect("quorum TLS poisoned")
            .client
            .clone()
    }

    fn check_files(&self) {
        let Some(r) = &self.reload else {
            return;
        };
        let mut seen = r.seen.lock().expect("quorum TLS poisoned");
        if seen.0.elapsed() < RELOAD_CHECK {
            return;
        }
        seen.0 = std::time::Instant::now();
        let now = mtimes(&r.files);
        if now == seen.1 {
            return;
        }
        seen.1 = now;
        match build_quorum(&r.props) {
            Ok(c) => {
                *self.current.lock().expect("quorum TLS poisoned") = c;
                eprintln!(
                    "ringkeeper: sslQuorumReloadCertFiles: the quorum key and trust stores changed; new connections use them"
                );
            }
            Err(e) => eprintln!(
                "ringkeeper: sslQuorumReloadCertFiles: the quorum stores changed but cannot be loaded ({e}); the previous ones stay in force"
            ),
        }
    }
}

/// Builds the quorum's TLS configuration from the `zookeeper.ssl.quorum.*` properties;
/// `reload`: `sslQuorumReloadCertFiles`.
pub fn quorum_settings(
    props: &BTreeMap<String, String>,
    reload: bool,
) -> Result<QuorumTls, String> {
    let current = build_quorum(props)?;
    let reload = reload.then(|| {
        let files: Vec<std::path::PathBuf> = ["keyStore.location", "trustStore.location"]
            .iter()
            .filter_map(|k| prop(props, "zookeeper.ssl.quorum.", k))
            .filter(|p| !p.is_empty())
            .map(std::path::PathBuf::from)
            .collect();
        Reload {
            props: props.clone(),
            seen: std::sync::Mutex::new((std::time::Instant::now(), mtimes(&files))),
            files,
        }
    });
    Ok(QuorumTls {
        current: std::sync::Mutex::new(current),
        reload,
    })
}

fn build_quorum(props: &BTreeMap<String, String>) -> Result<QuorumConfigs, String> {
    let prefix = "zookeeper.ssl.quorum.";
    let s = settings(props, prefix)?;
    let mut server = Arc::try_unwrap(s.server).map_err(|_| "shared server config".to_string())?;
    server.send_tls13_tickets = 0;
    // The client side: the same stores, and the same protocols and suites.
    let ks_path = prop(props, prefix, "keyStore.location").unwrap_or("");
    let ks_type = store::store_type(prop(props, prefix, "keyStore.type"), ks_path)?;
    let km = store::load_key_store(ks_path, &password(props, prefix, "keyStore")?, ks_type)?;
    let ts_path = prop(props, prefix, "trustStore.location").unwrap_or("");
    if ts_path.is_empty() {
        return Err(format!(
            "{prefix}trustStore.location is not set: servers verify each other against it"
        ));
    }
    let ts_type = store::store_type(prop(props, prefix, "trustStore.type"), ts_path)?;
    let mut roots = RootCertStore::empty();
    for c in store::load_trust_store(ts_path, &password(props, prefix, "trustStore")?, ts_type)? {
        roots
            .add(c)
            .map_err(|e| format!("trust store {ts_path}: a certificate is unusable: {e}"))?;
    }
    let versions = protocol_versions(
        prop(props, prefix, "protocol"),
        prop(props, prefix, "enabledProtocols"),
    )?;
    #[allow(deprecated)] // see `settings`
    let base = rustls::crypto::ring::default_provider();
    let provider = Arc::new(CryptoProvider {
        cipher_suites: cipher_suites(prop(props, prefix, "ciphersuites"))?,
        ..base
    });
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .map_err(|e| format!("{prefix}ciphersuites and enabledProtocols do not fit: {e}"))?
        .with_root_certificates(roots)
        .with_client_auth_cert(km.chain, km.key)
        .map_err(|e| format!("key store {ks_path}: {e}"))?;
    Ok(QuorumConfigs {
        server: Arc::new(server),
        client: Arc::new(client),
    })
}

/// The name a dialled server's certificate must carry: its address from the
/// `server.N` line (an IP SAN for an address, a DNS SAN for a host name), as
/// ZooKeeper's quorum hostname verification checks it.
pub fn server_name(addr: std::net::SocketAddr) -> rustls::pki_types::ServerName<'static> {
    rustls::pki_types::ServerName::IpAddress(addr.ip().into())
}

/// Completes a TLS handshake on a blocking socket (its timeouts bound it), mapping a
/// TLS failure to an error that says why.
pub fn handshake<C, S>(conn: &mut C, sock: &mut std::net::TcpStream) -> std::io::Result<()>
where
    C: std::ops::DerefMut<Target = rustls::ConnectionCommon<S>>,
    S: rustls::SideData,
{
    while conn.is_handshaking() {
        conn.complete_io(sock)?;
    }
    // Our last flight (the client's Finished) goes out before the socket is handed on.
    while conn.wants_write() {
        conn.write_tls(sock)?;
    }
    Ok(())
}

/// How a client connection speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wire {
    Plain,
    Tls,
    /// `client.portUnification`: decided by the first byte.
    Either,
}

enum Mode {
    Detect,
    Tls(Box<ServerConnection>),
}

struct Session {
    peer: SocketAddr,
    mode: Mode,
    /// The handshake completed and its identities were reported.
    authed: bool,
    /// Bytes arrived already (a first chunk that is no TLS record is worth a hint).
    received: bool,
    /// close_notify was sent: the connection is closing and its input is dropped
    /// (rustls takes no records after its own closing alert).
    closing: bool,
}

/// What [`TlsConns::receive`] made of received bytes.
pub enum Received {
    /// Not a TLS connection (none, or port unification chose plaintext): use the bytes
    /// as they are.
    Plain,
    /// Decrypted bytes are in [`TlsConns::take_plain`]; `ids` are the identities of a
    /// handshake that completed just now (to add to the connection's auth).
    Tls { ids: Vec<Id> },
    /// A fatal TLS error (already logged): send what `take_out` holds (the alert), then
    /// close.
    Close,
}

/// The TLS sessions of one event loop's connections, by slot.
pub struct TlsConns {
    settings: Arc<TlsSettings>,
    conns: HashMap<usize, Session>,
    plain: Vec<u8>,
    out: Vec<u8>,
}

impl TlsConns {
    pub fn new(settings: Arc<TlsSettings>) -> Self {
        TlsConns {
            settings,
            conns: HashMap::new(),
            plain: Vec::new(),
            out: Vec::new(),
        }
    }

    /// A connection was accepted (or adopted) on a port speaking `wire`.
    pub fn accepted(&mut self, slot: usize, peer: SocketAddr, wire: Wire) -> Result<(), String> {
        let mode = match wire {
            Wire::Plain => {
                self.conns.remove(&slot);
                return Ok(());
            }
            Wire::Either => Mode::Detect,
            Wire::Tls => Mode::Tls(Box::new(self.new_conn()?)),
        };
        self.conns.insert(
            slot,
            Session {
                peer,
                mode,
                authed: false,
                received: false,
                closing: false,
            },
        );
        Ok(())
    }

    fn new_conn(&self) -> Result<ServerConnection, String> {
        let mut c = ServerConnection::new(self.settings.server.clone())
            .map_err(|e| format!("cannot start a TLS session: {e}"))?;
        // Replies are encrypted as they are queued; the output bound is the io
        // layer's (MAX_UNSENT_OUTPUT_BYTES), not rustls'.
        c.set_buffer_limit(None);
        Ok(c)
    }

    /// Whether `slot` is a TLS connection still in its handshake (for the log line of
    /// a peer that hangs up then).
    pub fn handshaking(&self, slot: usize) -> bool {
        matches!(self.conns.get(&slot), Some(Session { mode: Mode::Tls(c), .. }) if c.is_handshaking())
    }

    pub fn is_tls(&self, slot: usize) -> bool {
        self.conns.contains_key(&slot)
    }

    /// Feeds received bytes. For TLS, the plaintext goes to [`TlsConns::take_plain`] and
    /// records to send (handshake messages) to [`TlsConns::take_out`].
    pub fn receive(&mut self, slot: usize, data: &[u8]) -> Received {
        // `out` may still hold the records of the last `encrypt`, already queued.
        self.out.clear();
        let Some(s) = self.conns.get_mut(&slot) else {
            return Received::Plain;
        };
        if let Mode::Detect = s.mode {
            match data.first() {
                None => return Received::Tls { ids: Vec::new() },
                Some(0x16) => match ServerConnection::new(self.settings.server.clone()) {
                    Ok(mut c) => {
                        c.set_buffer_limit(None);
                        s.mode = Mode::Tls(Box::new(c));
                    }
                    Err(e) => {
                        eprintln!(
                            "ringkeeper: closing {}: cannot start a TLS session: {e}",
                            s.peer
                        );
                        return Received::Close;
                    }
                },
                Some(_) => {
                    self.conns.remove(&slot);
                    return Received::Plain;
                }
            }
        }
        let Mode::Tls(conn) = &mut s.mode else {
            unreachable!("decided above")
        };
        if s.closing {
            return Received::Tls { ids: Vec::new() };
        }
        let first = !s.received;
        s.received = true;
        let mut rd = data;
        while !rd.is_empty() {
            if let Err(e) = conn.read_tls(&mut rd) {
                eprintln!("ringkeeper: closing {}: TLS read failed: {e}", s.peer);
                return Received::Close;
            }
            match conn.process_new_packets() {
                Ok(st) => {
                    let n = st.plaintext_bytes_to_read();
                    if n > 0 {
                        let at = self.plain.len();
                        self.plain.resize(at + n, 0);
                        if conn.reader().read_exact(&mut self.plain[at..]).is_err() {
                            self.plain.truncate(at);
                        }
                    }
                }
                Err(e) => {
                    let hint = if first && data.first() != Some(&0x16) {
                        " (plaintext sent to the TLS port?)"
                    } else {
                        ""
                    };
                    eprintln!(
                        "ringkeeper: closing {}: TLS {} failed: {e}{hint}",
                        s.peer,
                        if conn.is_handshaking() {
                            "handshake"
                        } else {
                            "session"
                        }
                    );
                    // The alert rustls queued tells the client why.
                    let _ = conn.write_tls(&mut self.out);
                    return Received::Close;
                }
            }
        }
        while conn.wants_write() {
            if conn.write_tls(&mut self.out).is_err() {
                break;
            }
        }
        let mut ids = Vec::new();
        if !s.authed && !conn.is_handshaking() {
            s.authed = true;
            if let Some(leaf) = conn.peer_certificates().and_then(|c| c.first()) {
                match dn::subject_rfc2253(leaf) {
                    Ok(name) => {
                        if self.settings.super_user.as_deref() == Some(name.as_str()) {
                            ids.push(Id {
                                scheme: "super".into(),
                                id: name.clone(),
                            });
                        }
                        ids.push(Id {
                            scheme: "x509".into(),
                            id: name,
                        });
                    }
                    Err(e) => {
                        eprintln!(
                            "ringkeeper: closing {}: cannot read the client certificate's subject: {e}",
                            s.peer
                        );
                        return Received::Close;
                    }
                }
            }
        }
        Received::Tls { ids }
    }

    /// The plaintext the last [`TlsConns::receive`] decrypted (give it back with
    /// [`TlsConns::give_back_plain`] to keep its allocation).
    pub fn take_plain(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.plain)
    }

    pub fn give_back_plain(&mut self, mut v: Vec<u8>) {
        v.clear();
        self.plain = v;
    }

    /// Records waiting to be sent (handshake messages, an alert), emptied.
    pub fn take_out(&mut self) -> Option<&[u8]> {
        if self.out.is_empty() {
            return None;
        }
        Some(&self.out)
    }

    /// Forgets what `take_out` returned (once it was queued).
    pub fn sent_out(&mut self) {
        self.out.clear();
    }

    /// Encrypts `bytes` for a TLS connection: the records to send, or `None` when
    /// `slot` is not TLS (send `bytes` as they are).
    pub fn encrypt(&mut self, slot: usize, bytes: &[u8]) -> Option<&[u8]> {
        let Mode::Tls(conn) = &mut self.conns.get_mut(&slot)?.mode else {
            return None;
        };
        self.out.clear();
        // With no buffer limit the writer takes everything.
        let _ = std::io::Write::write_all(&mut conn.writer(), bytes);
        while conn.wants_write() {
            if conn.write_tls(&mut self.out).is_err() {
                break;
            }
        }
        Some(&self.out)
    }

    /// The records that end a TLS connection (close_notify), or `None` when not TLS.
    pub fn close_notify(&mut self, slot: usize) -> Option<&[u8]> {
        let s = self.conns.get_mut(&slot)?;
        let Mode::Tls(conn) = &mut s.mode else {
            return None;
        };
        s.closing = true;
        self.out.clear();
        conn.send_close_notify();
        while conn.wants_write() {
            if conn.write_tls(&mut self.out).is_err() {
                break;
            }
        }
        Some(&self.out)
    }

    /// The connection is gone.
    pub fn closed(&mut self, slot: usize) {
        self.conns.remove(&slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols_and_suites_map_java_names() {
        // ZooKeeper's defaults: TLSv1.3 enables 1.3 and 1.2; TLSv1.2 only 1.2.
        assert_eq!(protocol_versions(None, None).unwrap().len(), 2);
        let v = protocol_versions(Some("TLSv1.2"), None).unwrap();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].version, rustls::ProtocolVersion::TLSv1_2);
        let v = protocol_versions(Some("TLSv1.2"), Some("TLSv1.3")).unwrap();
        assert_eq!(v[0].version, rustls::ProtocolVersion::TLSv1_3);
        assert!(protocol_versions(Some("TLSv1.1"), None)
            .unwrap_err()
            .contains("not supported"));
        assert!(protocol_versions(None, Some("TLSv1.3,TLSv1"))
            .unwrap_err()
            .contains("TLSv1 is not supported"));
        assert!(protocol_versions(None, Some("TLSv9"))
            .unwrap_err()
            .contains("unknown protocol"));

        assert_eq!(cipher_suites(None).unwrap().len(), 7);
        let s = cipher_suites(Some(
            "TLS_AES_128_GCM_SHA256, TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        ))
        .unwrap();
        assert_eq!(
            s.iter().map(|s| s.suite()).collect::<Vec<_>>(),
            vec![
                rustls::CipherSuite::TLS13_AES_128_GCM_SHA256,
                rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
            ]
        );
        assert!(cipher_suites(Some("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256"))
            .unwrap_err()
            .contains("is not supported"));
        assert!(cipher_suites(Some("RC4-MD5"))
            .unwrap_err()
            .contains("unknown cipher suite"));
        assert!(cipher_suites(Some(" , ")).is_err());

        assert_eq!(client_auth(None), Ok(ClientAuth::Need));
        assert_eq!(client_auth(Some("")), Ok(ClientAuth::Need));
        assert_eq!(client_auth(Some("want")), Ok(ClientAuth::Want));
        assert_eq!(client_auth(Some("NONE")), Ok(ClientAuth::None));
        assert!(client_auth(Some("optional")).is_err());
    }

    #[test]
    fn missing_key_store_is_a_clear_error() {
        let props = BTreeMap::new();
        let e = client_settings(&props).err().expect("an error");
        assert!(
            e.contains("zookeeper.ssl.keyStore.location is not set"),
            "{e}"
        );
        let mut props = BTreeMap::new();
        props.insert("zookeeper.ssl.authProvider".to_string(), "sasl".to_string());
        let e = client_settings(&props).err().expect("an error");
        assert!(e.contains("only the x509 provider"), "{e}");
    }
}
