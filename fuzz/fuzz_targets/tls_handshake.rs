//! Feeds arbitrary bytes to the server's TLS receive path as a client connection would
//! deliver them: `tls::TlsConns::receive` on a TLS-only connection and on a
//! port-unification one, in chunks the input chooses (the first byte sets the chunk
//! size, as the kernel splits a stream at any point), with replies encrypted and a
//! close_notify in between as the shard would cause them. Nothing may panic; a session
//! that reports `Close` gets no more input, as the driver closes it.
//!
//! The server's certificate and key are generated once per run (rcgen), so no key is
//! committed; the same self-signed certificate is the trust root for client
//! certificates (`ssl.clientAuth=want`, so a handshake without one can complete too).

#![no_main]

use libfuzzer_sys::fuzz_target;
use ringkeeper::tls::{ClientAuth, Received, TlsConns, TlsSettings, Wire};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

fn settings() -> Arc<TlsSettings> {
    static S: OnceLock<Arc<TlsSettings>> = OnceLock::new();
    S.get_or_init(|| {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
            .expect("rcgen makes a certificate");
        let cert = CertificateDer::from(ck.cert.der().to_vec());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.key_pair.serialize_der()));
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.clone()).expect("a usable root");
        #[allow(deprecated)] // ring: see src/tls/mod.rs
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .allow_unauthenticated()
        .build()
        .expect("a verifier");
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![cert], key)
            .expect("a server config");
        Arc::new(TlsSettings {
            server: Arc::new(server),
            client_auth: ClientAuth::Want,
            super_user: Some("CN=fuzz".to_string()),
        })
    })
    .clone()
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(first % 64) + 1;
    let peer: SocketAddr = "127.0.0.1:1".parse().expect("an address");
    let mut conns = TlsConns::new(settings());
    for (slot, wire) in [(1usize, Wire::Tls), (2, Wire::Either)] {
        conns.accepted(slot, peer, wire).expect("a session");
        // Bounded by the input: each pass consumes one chunk.
        for (i, piece) in rest.chunks(chunk).enumerate() {
            match conns.receive(slot, piece) {
                Received::Plain => break,
                Received::Close => {
                    let _ = conns.take_out();
                    conns.sent_out();
                    break;
                }
                Received::Tls { ids } => {
                    assert!(ids.iter().all(|id| !id.id.is_empty()));
                    let _ = conns.take_out();
                    conns.sent_out();
                    let plain = conns.take_plain();
                    if !plain.is_empty() {
                        // The shard answers: encrypt something back.
                        let _ = conns.encrypt(slot, &plain[..plain.len().min(64)]);
                    }
                    conns.give_back_plain(plain);
                }
            }
            if i == 40 {
                // As the driver: a closing connection is fed no more input, but a
                // stray chunk must not upset the layer either.
                let _ = conns.close_notify(slot);
                let _ = conns.receive(slot, piece);
                break;
            }
        }
        conns.closed(slot);
    }
});
