//! TLS for the measured sessions (`zkbench run --tls`): a rustls client configuration
//! from PEM files, the blocking TLS and ZooKeeper handshakes, and the non-blocking
//! read and write steps the engine's epoll loop calls instead of the socket's.
//!
//! The engine keeps its framing: requests are encoded into the session's output buffer
//! as before, and `flush` hands them to rustls, whose records go to the socket until it
//! would block (the rest stays in rustls; EPOLLOUT resumes it). Reads drain the socket
//! into rustls and its plaintext into the session's input buffer.

use super::conn::{connect_frame, parse_connect_response, ConnError};
use crate::proto::ConnectResponse;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::ClientConnection;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

/// A client configuration: the CA to trust, and a client certificate and key when the
/// server asks for one (ZooKeeper's `ssl.clientAuth=need`, its default).
pub fn client_config(
    ca: &str,
    cert: Option<&str>,
    key: Option<&str>,
) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).map_err(|e| format!("--tls-ca {ca}: {e}"))? {
        let c = c.map_err(|e| format!("--tls-ca {ca}: {e}"))?;
        roots
            .add(c)
            .map_err(|e| format!("--tls-ca {ca}: an unusable certificate: {e}"))?;
    }
    // See src/tls/mod.rs for why ring.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let cfg = match (cert, key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|i| i.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("--tls-cert {cert}: {e}"))?;
            let key =
                PrivateKeyDer::from_pem_file(key).map_err(|e| format!("--tls-key {key}: {e}"))?;
            b.with_client_auth_cert(chain, key)
                .map_err(|e| format!("--tls-cert/--tls-key: {e}"))?
        }
        (None, None) => b.with_no_client_auth(),
        _ => return Err("--tls-cert and --tls-key go together".into()),
    };
    Ok(Arc::new(cfg))
}

/// Connects, completes the TLS handshake and ZooKeeper's, and leaves the stream
/// non-blocking for the engine.
pub fn connect(
    addr: SocketAddr,
    timeout_ms: i32,
    cfg: &Arc<rustls::ClientConfig>,
) -> Result<(TcpStream, Box<ClientConnection>, ConnectResponse), ConnError> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let name = ServerName::IpAddress(addr.ip().into());
    let mut conn = Box::new(
        ClientConnection::new(cfg.clone(), name)
            .map_err(|e| ConnError::Protocol(format!("TLS: {e}")))?,
    );
    let mut s = rustls::Stream::new(&mut *conn, &mut stream);
    s.write_all(&connect_frame(timeout_ms))?;
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let n = i32::from_be_bytes(len);
    if !(0..=1 << 20).contains(&n) {
        return Err(ConnError::Protocol(format!("bad frame length {n}")));
    }
    let mut payload = vec![0u8; n as usize];
    s.read_exact(&mut payload)?;
    let resp = parse_connect_response(&payload)?;
    stream.set_read_timeout(None)?;
    stream.set_nonblocking(true)?;
    Ok((stream, conn, resp))
}

/// Encrypts `plain` and writes records until the socket would block. Ok(true) when
/// nothing is left to send.
pub fn flush(
    conn: &mut ClientConnection,
    stream: &mut TcpStream,
    plain: &[u8],
) -> io::Result<bool> {
    if !plain.is_empty() {
        conn.writer().write_all(plain)?;
    }
    while conn.wants_write() {
        match conn.write_tls(stream) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Reads what the socket has into rustls and appends the plaintext to `into`.
/// Ok(false) when the connection ended (EOF or close_notify).
pub fn read(
    conn: &mut ClientConnection,
    stream: &mut TcpStream,
    into: &mut Vec<u8>,
) -> io::Result<bool> {
    loop {
        match conn.read_tls(stream) {
            Ok(0) => return Ok(false),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        let st = conn.process_new_packets().map_err(io::Error::other)?;
        let n = st.plaintext_bytes_to_read();
        if n > 0 {
            let at = into.len();
            into.resize(at + n, 0);
            conn.reader().read_exact(&mut into[at..])?;
        }
        if st.peer_has_closed() {
            return Ok(false);
        }
    }
}
