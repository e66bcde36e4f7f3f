//! The server side of SASL DIGEST-MD5 (RFC 2831) as the JDK's `DigestMD5Server` runs it
//! for ZooKeeper, which creates it with protocol `zookeeper`, server name `zk-sasl-md5`
//! and no properties:
//!
//! 1. The client's first token (empty: DIGEST-MD5 has no initial response; a non-empty
//!    one is ignored, as the JDK does) is answered with a challenge:
//!    `realm="zk-sasl-md5",nonce="<40 chars>",charset=utf-8,algorithm=md5-sess` (no qop
//!    directive, which means `auth`: ZooKeeper gives the JDK no qop property; this is
//!    byte for byte what ZooKeeper 3.8 on Java 17 sends).
//! 2. The client's digest-response is checked (realm, nonce, qop, digest-uri
//!    `zookeeper/zk-sasl-md5`, the response hash against the user's password from the
//!    JAAS file) and answered with `rspauth=<hash>`; the exchange is then complete.
//! 3. Anything after that fails ("Server at illegal state").
//!
//! Only qop `auth` is offered, as ZooKeeper's server offers it (no SASL properties):
//! ZooKeeper's clients never wrap or unwrap packets, so no integrity or privacy layer
//! (and no HMAC-MD5) exists here. Tokens longer than 4096 bytes fail, the JDK's limit.
//!
//! Owns: the exchange's state and its hashes. Must not know about connections; the
//! caller maps [`Fail`] to ZooKeeper's answer.

use md5::{Digest, Md5};

/// The JDK's `MAX_RESPONSE_LENGTH`.
pub const MAX_RESPONSE_LENGTH: usize = 4096;
/// The protocol and server name ZooKeeper gives the JDK (`ZooKeeperSaslServer`); the
/// realm is the server name and the digest-uri is `protocol/serverName`.
pub const PROTOCOL: &str = "zookeeper";
pub const SERVER_NAME: &str = "zk-sasl-md5";

/// Why an exchange failed, in the two ways ZooKeeper's server tells apart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fail {
    /// A `SaslException`: ZooKeeper answers AUTHFAILED (or lets the client stay with
    /// `allowSaslFailedClients`).
    Sasl(String),
    /// A runtime exception out of the JDK (a number that does not parse, a name
    /// `KerberosName` refuses): ZooKeeper's connection dies without an answer.
    Broken(String),
}

/// What a step produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Send this token; the exchange goes on.
    Continue(Vec<u8>),
    /// Send this token; the client is authenticated as this user (its authentication
    /// id, before any authorization mapping).
    Complete {
        token: Vec<u8>,
        user: String,
        authzid: Option<String>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Start,
    Challenged,
    Done,
}

/// One connection's DIGEST-MD5 exchange.
#[derive(Debug)]
pub struct Server {
    state: State,
    nonce: Vec<u8>,
}

impl Default for Server {
    fn default() -> Self {
        Self::new()
    }
}

impl Server {
    pub fn new() -> Self {
        Server {
            state: State::Start,
            nonce: Vec::new(),
        }
    }

    /// Runs one step on the client's `token`; `password` looks a user's password up
    /// (`None`: unknown user).
    ///
    /// # Errors
    /// [`Fail`] as the JDK would fail: see the module header.
    pub fn step(
        &mut self,
        token: &[u8],
        password: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Step, Fail> {
        if token.len() > MAX_RESPONSE_LENGTH {
            return Err(Fail::Sasl(format!(
                "DIGEST-MD5: Invalid digest response length. Got: {} Expected < {MAX_RESPONSE_LENGTH}",
                token.len()
            )));
        }
        match self.state {
            State::Start => {
                self.nonce = new_nonce();
                self.state = State::Challenged;
                let mut c = Vec::with_capacity(128);
                c.extend_from_slice(b"realm=\"");
                c.extend_from_slice(SERVER_NAME.as_bytes());
                c.extend_from_slice(b"\",nonce=\"");
                c.extend_from_slice(&self.nonce);
                c.extend_from_slice(b"\",charset=utf-8,algorithm=md5-sess");
                Ok(Step::Continue(c))
            }
            State::Challenged => {
                // Whatever happens, this server is done (the JDK's `step = 0`).
                self.state = State::Done;
                self.validate(token, password)
            }
            State::Done => Err(Fail::Sasl("DIGEST-MD5: Server at illegal state".into())),
        }
    }

    fn validate(
        &self,
        token: &[u8],
        password: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Step, Fail> {
        let d = parse_directives(token).map_err(Fail::Sasl)?;
        let text =
            |b: &Option<Vec<u8>>| b.as_ref().map(|v| String::from_utf8_lossy(v).into_owned());
        let violation =
            |m: &str| Fail::Sasl(format!("DIGEST-MD5: digest response format violation. {m}"));
        if let Some(cs) = text(&d.charset) {
            if cs != "utf-8" {
                return Err(violation(&format!("Incompatible charset value: {cs}")));
            }
        }
        if let Some(mb) = text(&d.maxbuf) {
            java_parse_int(&mb, 10)
                .ok_or_else(|| Fail::Broken(format!("maxbuf {mb:?} is not a number")))?;
        }
        let username = text(&d.username).ok_or_else(|| violation("Missing username."))?;
        let realm = text(&d.realm).unwrap_or_default();
        if realm != SERVER_NAME {
            return Err(violation(&format!("Nonexistent realm: {realm}")));
        }
        let nonce = d
            .nonce
            .as_ref()
            .ok_or_else(|| violation("Missing nonce."))?;
        if *nonce != self.nonce {
            return Err(violation("Mismatched nonce."));
        }
        let cnonce = d
            .cnonce
            .as_ref()
            .ok_or_else(|| violation("Missing cnonce."))?;
        if let Some(nc) = text(&d.nc) {
            let n = java_parse_int(&nc, 16)
                .ok_or_else(|| Fail::Broken(format!("nonce count {nc:?} is not a number")))?;
            if n != 1 {
                return Err(violation(&format!("Nonce count does not match: {nc}")));
            }
        }
        let qop = text(&d.qop).unwrap_or_else(|| "auth".into());
        match qop.as_str() {
            "auth" => {}
            "auth-int" | "auth-conf" => {
                return Err(Fail::Sasl(format!(
                    "DIGEST-MD5: server does not support  qop: {qop}"
                )))
            }
            _ => return Err(violation(&format!("Invalid QOP: {qop}"))),
        }
        let expected_uri = format!("{PROTOCOL}/{SERVER_NAME}");
        let uri = text(&d.digest_uri);
        let uri = match uri {
            Some(u) if u.eq_ignore_ascii_case(&expected_uri) => u,
            other => {
                return Err(violation(&format!(
                    "Mismatched URI: {}; expecting: {expected_uri}",
                    other.as_deref().unwrap_or("null")
                )))
            }
        };
        let response = d.response.as_ref().ok_or_else(|| {
            Fail::Sasl("DIGEST-MD5: digest response format  violation. Missing response.".into())
        })?;
        let authzid = d.authzid.as_deref();
        let Some(pw) = password(&username) else {
            return Err(Fail::Sasl(format!(
                "DIGEST-MD5: cannot acquire password for {username} in realm : {realm}"
            )));
        };
        let h = Hashes {
            username: &username,
            realm: &realm,
            password: &pw,
            nonce: &self.nonce,
            cnonce,
            qop: &qop,
            uri: &uri,
            authzid,
        };
        if h.response_value("AUTHENTICATE").as_slice() != response.as_slice() {
            return Err(violation("Mismatched response."));
        }
        let mut token = b"rspauth=".to_vec();
        token.extend_from_slice(&h.response_value(""));
        Ok(Step::Complete {
            token,
            user: username,
            authzid: authzid.map(|a| String::from_utf8_lossy(a).into_owned()),
        })
    }
}

/// The inputs of RFC 2831's response-value.
struct Hashes<'a> {
    username: &'a str,
    realm: &'a str,
    password: &'a str,
    nonce: &'a [u8],
    cnonce: &'a [u8],
    qop: &'a str,
    uri: &'a str,
    authzid: Option<&'a [u8]>,
}

impl Hashes<'_> {
    /// `HEX(KD(HEX(H(A1)), nonce:nc:cnonce:qop:HEX(H(A2))))` with A2 =
    /// `method:digest-uri` ("AUTHENTICATE" for the client's response, "" for rspauth).
    fn response_value(&self, method: &str) -> Vec<u8> {
        let ha2 = hex(&Md5::digest(format!("{method}:{}", self.uri).as_bytes()));
        let mut begin = Md5::new();
        begin.update(latin1_or_utf8(self.username));
        begin.update(b":");
        begin.update(latin1_or_utf8(self.realm));
        begin.update(b":");
        begin.update(latin1_or_utf8(self.password));
        let mut a1 = Md5::new();
        a1.update(begin.finalize());
        a1.update(b":");
        a1.update(self.nonce);
        a1.update(b":");
        a1.update(self.cnonce);
        if let Some(z) = self.authzid {
            a1.update(b":");
            a1.update(z);
        }
        let ha1 = hex(&a1.finalize());
        let mut kd = Md5::new();
        kd.update(&ha1);
        kd.update(b":");
        kd.update(self.nonce);
        kd.update(b":00000001:");
        kd.update(self.cnonce);
        kd.update(b":");
        kd.update(self.qop.as_bytes());
        kd.update(b":");
        kd.update(&ha2);
        hex(&kd.finalize())
    }
}

/// The JDK's `stringToByte_8859_1` on a UTF-8 server: ISO-8859-1 when every character
/// fits, else UTF-8.
fn latin1_or_utf8(s: &str) -> Vec<u8> {
    if s.chars().all(|c| (c as u32) <= 0xff) {
        s.chars().map(|c| c as u8).collect()
    } else {
        s.as_bytes().to_vec()
    }
}

fn hex(b: &[u8]) -> Vec<u8> {
    const D: &[u8; 16] = b"0123456789abcdef";
    b.iter()
        .flat_map(|x| [D[(x >> 4) as usize], D[(x & 15) as usize]])
        .collect()
}

/// 30 random bytes, base64 (40 characters), as the JDK's `generateNonce`.
fn new_nonce() -> Vec<u8> {
    use base64::Engine;
    let mut raw = [0u8; 30];
    fill_random(&mut raw);
    base64::engine::general_purpose::STANDARD
        .encode(raw)
        .into_bytes()
}

/// Fills `buf` from the kernel's random source (getrandom(2)).
pub fn fill_random(buf: &mut [u8]) {
    let mut filled = 0;
    while filled < buf.len() {
        // SAFETY: the pointer and length describe the unfilled tail of `buf`.
        let n =
            unsafe { libc::getrandom(buf[filled..].as_mut_ptr().cast(), buf.len() - filled, 0) };
        if n > 0 {
            filled += n as usize;
        } else if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            // getrandom(2) does not fail on Linux 3.17+ with a valid buffer; a nonce
            // from the clock is still unique per connection if it ever did.
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            for (i, b) in buf[filled..].iter_mut().enumerate() {
                *b = (t >> ((i % 16) * 8)) as u8 ^ i as u8;
            }
            return;
        }
    }
}

/// `Integer.parseInt(s, radix)`: an optional sign, then digits, within i32.
fn java_parse_int(s: &str, radix: u32) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    i32::from_str_radix(s, radix).ok().map(i64::from)
}

/// The directives of a digest-response that the server reads.
#[derive(Default, Debug)]
struct Directives {
    username: Option<Vec<u8>>,
    realm: Option<Vec<u8>>,
    nonce: Option<Vec<u8>>,
    cnonce: Option<Vec<u8>>,
    nc: Option<Vec<u8>>,
    qop: Option<Vec<u8>>,
    digest_uri: Option<Vec<u8>>,
    response: Option<Vec<u8>>,
    maxbuf: Option<Vec<u8>>,
    charset: Option<Vec<u8>>,
    cipher: Option<Vec<u8>>,
    authzid: Option<Vec<u8>>,
}

impl Directives {
    fn slot(&mut self, key: &str) -> Option<&mut Option<Vec<u8>>> {
        Some(match key.to_ascii_lowercase().as_str() {
            "username" => &mut self.username,
            "realm" => &mut self.realm,
            "nonce" => &mut self.nonce,
            "cnonce" => &mut self.cnonce,
            // The JDK's directive table names it "nonce-count", not RFC 2831's "nc":
            // the `nc` every client sends is an unknown directive and ignored (checked
            // on JDK 17 and 25), and the hash always uses 00000001.
            "nonce-count" => &mut self.nc,
            "qop" => &mut self.qop,
            "digest-uri" => &mut self.digest_uri,
            "response" => &mut self.response,
            "maxbuf" => &mut self.maxbuf,
            "charset" => &mut self.charset,
            "cipher" => &mut self.cipher,
            "authzid" => &mut self.authzid,
            _ => return None,
        })
    }

    fn put(&mut self, key: &[u8], value: Vec<u8>) -> Result<(), String> {
        let key = String::from_utf8_lossy(key).into_owned();
        if let Some(slot) = self.slot(&key) {
            if slot.is_some() {
                return Err(format!(
                    "DIGEST-MD5: peer sent more than one {key} directive: {}",
                    String::from_utf8_lossy(&value)
                ));
            }
            *slot = Some(value);
        }
        // Unknown directives (auth-param) are ignored.
        Ok(())
    }
}

fn is_lws(b: u8) -> bool {
    matches!(b, b'\r' | b'\n' | b' ' | b'\t')
}

fn skip_lws(buf: &[u8], mut i: usize) -> usize {
    while i < buf.len() && is_lws(buf[i]) {
        i += 1;
    }
    i
}

/// The JDK's `parseDirectives`: `key=value` or `key="quoted"` separated by commas and
/// linear white space, `\` escaping inside quotes.
fn parse_directives(buf: &[u8]) -> Result<Directives, String> {
    let mut d = Directives::default();
    let mut key = Vec::new();
    let mut value = Vec::new();
    let mut getting_key = true;
    let mut quoted = false;
    let mut expect_sep = false;
    let show = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let mut i = skip_lws(buf, 0);
    while i < buf.len() {
        let b = buf[i];
        if getting_key {
            if b == b',' {
                if !key.is_empty() {
                    return Err(format!("Directive key contains a ',':{}", show(&key)));
                }
                i = skip_lws(buf, i + 1);
            } else if b == b'=' {
                if key.is_empty() {
                    return Err("Empty directive key".into());
                }
                getting_key = false;
                i = skip_lws(buf, i + 1);
                if i < buf.len() {
                    if buf[i] == b'"' {
                        quoted = true;
                        i += 1;
                    }
                } else {
                    return Err(format!("Valueless directive found: {}", show(&key)));
                }
            } else if is_lws(b) {
                i = skip_lws(buf, i + 1);
                if i >= buf.len() || buf[i] != b'=' {
                    return Err(format!("'=' expected after key: {}", show(&key)));
                }
            } else {
                key.push(b);
                i += 1;
            }
        } else if quoted {
            if b == b'\\' {
                i += 1;
                if i < buf.len() {
                    value.push(buf[i]);
                    i += 1;
                } else {
                    return Err(format!(
                        "Unmatched quote found for directive: {} with value: {}",
                        show(&key),
                        show(&value)
                    ));
                }
            } else if b == b'"' {
                i += 1;
                quoted = false;
                expect_sep = true;
            } else {
                value.push(b);
                i += 1;
            }
        } else if is_lws(b) || b == b',' {
            d.put(&key, std::mem::take(&mut value))?;
            key.clear();
            getting_key = true;
            expect_sep = false;
            i = skip_lws(buf, i + 1);
        } else if expect_sep {
            return Err(format!(
                "Expecting comma or linear whitespace after quoted string: \"{}\"",
                show(&value)
            ));
        } else {
            value.push(b);
            i += 1;
        }
    }
    if quoted {
        return Err(format!(
            "Unmatched quote found for directive: {} with value: {}",
            show(&key),
            show(&value)
        ));
    }
    if !key.is_empty() {
        d.put(&key, value)?;
    }
    Ok(d)
}

/// The client side of the exchange, for tests and the fuzz target: the digest-response
/// to `challenge` (qop auth, nc 1) and the rspauth it expects back.
pub fn client_response(
    challenge: &[u8],
    user: &str,
    password: &str,
    cnonce: &str,
    uri: &str,
) -> (Vec<u8>, Vec<u8>) {
    let d = parse_directives(challenge).unwrap_or_default();
    let realm = d
        .realm
        .map(|r| String::from_utf8_lossy(&r).into_owned())
        .unwrap_or_default();
    let nonce = d.nonce.unwrap_or_default();
    let h = Hashes {
        username: user,
        realm: &realm,
        password,
        nonce: &nonce,
        cnonce: cnonce.as_bytes(),
        qop: "auth",
        uri,
        authzid: None,
    };
    let resp = format!(
        "charset=utf-8,username=\"{user}\",realm=\"{realm}\",nonce=\"{}\",nc=00000001,cnonce=\"{cnonce}\",digest-uri=\"{uri}\",maxbuf=65536,response={},qop=auth",
        String::from_utf8_lossy(&nonce),
        String::from_utf8_lossy(&h.response_value("AUTHENTICATE"))
    );
    let mut rspauth = b"rspauth=".to_vec();
    rspauth.extend_from_slice(&h.response_value(""));
    (resp.into_bytes(), rspauth)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users(u: &str) -> Option<String> {
        match u {
            "bob" => Some("bobsecret".into()),
            "émile" => Some("pässwörd".into()),
            _ => None,
        }
    }

    const URI: &str = "zookeeper/zk-sasl-md5";

    #[test]
    fn rfc_2831_example_response_value() {
        // RFC 2831 section 4's IMAP example (realm elwood.innosoft.com).
        let h = Hashes {
            username: "chris",
            realm: "elwood.innosoft.com",
            password: "secret",
            nonce: b"OA6MG9tEQGm2hh",
            cnonce: b"OA6MHXh6VqTrRk",
            qop: "auth",
            uri: "imap/elwood.innosoft.com",
            authzid: None,
        };
        assert_eq!(
            h.response_value("AUTHENTICATE"),
            b"d388dad90d4bbd760a152321f2143af7"
        );
        assert_eq!(h.response_value(""), b"ea40f60335c427b5527b84dbabcdfffd");
    }

    #[test]
    fn a_full_exchange_authenticates_the_user() {
        let mut s = Server::new();
        let Step::Continue(ch) = s.step(b"", &users).unwrap() else {
            panic!("no challenge")
        };
        let text = String::from_utf8(ch.clone()).unwrap();
        assert!(text.starts_with("realm=\"zk-sasl-md5\",nonce=\""), "{text}");
        assert!(
            text.ends_with("\",charset=utf-8,algorithm=md5-sess"),
            "{text}"
        );
        let (resp, rspauth) = client_response(&ch, "bob", "bobsecret", "abc", URI);
        match s.step(&resp, &users).unwrap() {
            Step::Complete {
                token,
                user,
                authzid,
            } => {
                assert_eq!(token, rspauth);
                assert_eq!(user, "bob");
                assert_eq!(authzid, None);
            }
            other => panic!("{other:?}"),
        }
        // A second exchange on the same server fails.
        assert_eq!(
            s.step(b"", &users),
            Err(Fail::Sasl("DIGEST-MD5: Server at illegal state".into()))
        );
    }

    #[test]
    fn non_ascii_names_hash_as_latin1() {
        let mut s = Server::new();
        let Step::Continue(ch) = s.step(b"", &users).unwrap() else {
            panic!()
        };
        let (resp, _) = client_response(&ch, "émile", "pässwörd", "x", URI);
        assert!(matches!(s.step(&resp, &users), Ok(Step::Complete { .. })));
    }

    fn second_step(resp: &[u8]) -> Result<Step, Fail> {
        let mut s = Server::new();
        s.step(b"", &users).unwrap();
        s.step(resp, &users)
    }

    fn challenge_and(f: impl Fn(&[u8]) -> Vec<u8>) -> Result<Step, Fail> {
        let mut s = Server::new();
        let Step::Continue(ch) = s.step(b"", &users).unwrap() else {
            panic!()
        };
        s.step(&f(&ch), &users)
    }

    fn sasl_err(r: Result<Step, Fail>) -> String {
        match r {
            Err(Fail::Sasl(m)) => m,
            other => panic!("not a SASL failure: {other:?}"),
        }
    }

    #[test]
    fn wrong_password_unknown_user_and_bad_uri_fail() {
        let wrong = challenge_and(|ch| client_response(ch, "bob", "nope", "c", URI).0);
        assert!(sasl_err(wrong).contains("Mismatched response"));
        let unknown = challenge_and(|ch| client_response(ch, "mallory", "x", "c", URI).0);
        assert!(sasl_err(unknown).contains("cannot acquire password for mallory"));
        let uri = challenge_and(|ch| client_response(ch, "bob", "bobsecret", "c", "ldap/x").0);
        assert!(sasl_err(uri).contains("Mismatched URI: ldap/x"));
        // The URI is compared ignoring case, as the JDK does.
        let upper = challenge_and(|ch| {
            client_response(ch, "bob", "bobsecret", "c", "ZooKeeper/ZK-SASL-MD5").0
        });
        assert!(matches!(upper, Ok(Step::Complete { .. })));
    }

    #[test]
    fn garbled_responses_fail_without_panicking() {
        for garbage in [
            &b"\x00\xff\xfe"[..],
            b"username",
            b"username=\"bob",
            b"=x",
            b"a b",
            b"username=\"a\"x",
            b"username=a,username=b",
            b",,,,",
            b"realm=zk-sasl-md5,nonce=\"\\",
        ] {
            let r = second_step(garbage);
            assert!(matches!(r, Err(Fail::Sasl(_))), "{garbage:?}: {r:?}");
        }
        let r = second_step(&[b'a'; MAX_RESPONSE_LENGTH + 1]);
        assert!(sasl_err(r).contains("Invalid digest response length"));
    }

    #[test]
    fn unparsable_numbers_break_the_connection_like_the_jdk() {
        // bob's correct response with `from` replaced by `to`, answered.
        let edited = |from: &str, to: &str| {
            challenge_and(|ch| {
                let (resp, _) = client_response(ch, "bob", "bobsecret", "c", URI);
                String::from_utf8(resp)
                    .unwrap()
                    .replace(from, to)
                    .into_bytes()
            })
        };
        // RFC 2831's `nc` is not read at all (the JDK looks for "nonce-count").
        for nc in ["nc=zz", "nc=00000002", "nc=1,nc=2"] {
            let r = edited("nc=00000001", nc);
            assert!(matches!(r, Ok(Step::Complete { .. })), "{nc}: {r:?}");
        }
        let r = edited("nc=00000001", "nonce-count=zz");
        assert!(matches!(r, Err(Fail::Broken(_))), "{r:?}");
        let r = edited("maxbuf=65536", "maxbuf=lots");
        assert!(matches!(r, Err(Fail::Broken(_))), "{r:?}");
        let r = edited("nc=00000001", "nonce-count=00000002");
        assert!(sasl_err(r).contains("Nonce count does not match"));
    }

    #[test]
    fn nonces_differ_between_exchanges() {
        assert_ne!(new_nonce(), new_nonce());
        assert_eq!(new_nonce().len(), 40);
    }
}
