//! Feeds arbitrary bytes to the server's SASL exchange (`sasl::SaslConn::process`, the
//! DIGEST-MD5 server behind it) as one connection's SASL packets would.
//!
//! The first byte picks the mode:
//! - even: the rest is a list of tokens (each a 2-byte big-endian length, then that many
//!   bytes), sent in order;
//! - odd: a real exchange with the server's own challenge, whose correct digest-response
//!   is then edited by the rest (pairs of position, byte) before it is sent, so that the
//!   fuzzer reaches the checks behind the nonce; a token after that follows.
//!
//! Nothing may panic; an exchange may only succeed with an `rspauth=` token, and an
//! unedited response must succeed.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ringkeeper::sasl::{digest_md5, Answer, Login, SaslConn, SaslSettings};
use std::collections::HashMap;

fn settings() -> SaslSettings {
    let mut users = HashMap::new();
    users.insert("bob".to_string(), "bobsecret".to_string());
    users.insert("super".to_string(), "adminsecret".to_string());
    SaslSettings {
        login: Some(Login {
            users,
            ..Login::default()
        }),
        provider: true,
        super_users: vec!["super".into()],
        ..SaslSettings::default()
    }
}

fn check(a: &Answer) {
    if let Answer::Reply {
        token: Some(t),
        new_ids,
    } = a
    {
        if !new_ids.is_empty() {
            assert!(t.starts_with(b"rspauth="), "success without rspauth");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let s = settings();
    let mut conn = SaslConn::default();
    if mode % 2 == 0 {
        let mut rest = rest;
        while rest.len() >= 2 {
            let n = (usize::from(rest[0]) << 8 | usize::from(rest[1])).min(rest.len() - 2);
            let (tok, tail) = rest[2..].split_at(n);
            let (a, _) = conn.process(&s, tok);
            check(&a);
            rest = tail;
            if !matches!(a, Answer::Reply { .. }) {
                return;
            }
        }
        return;
    }
    let (a, _) = conn.process(&s, b"");
    let Answer::Reply {
        token: Some(challenge),
        ..
    } = a
    else {
        panic!("no challenge: {a:?}");
    };
    let (mut resp, rspauth) = digest_md5::client_response(
        &challenge,
        "bob",
        "bobsecret",
        "cnonce",
        "zookeeper/zk-sasl-md5",
    );
    let edits = rest.chunks_exact(2);
    let tail = edits.remainder();
    let edited = rest.len() >= 2;
    for e in edits {
        let pos = usize::from(e[0]);
        if pos < resp.len() {
            resp[pos] = e[1];
        } else {
            resp.push(e[1]);
        }
    }
    let (a, _) = conn.process(&s, &resp);
    check(&a);
    if !edited {
        assert_eq!(
            a,
            Answer::Reply {
                token: Some(rspauth),
                new_ids: vec![ringkeeper::proto::Id {
                    scheme: "sasl".into(),
                    id: "bob".into()
                }],
            }
        );
    }
    let (a, _) = conn.process(&s, tail);
    check(&a);
});
