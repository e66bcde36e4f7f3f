//! The server side of SASL GSSAPI (RFC 4752, Kerberos V5) as the JDK's `GssKrb5Server`
//! runs it for ZooKeeper, on the system's MIT GSSAPI library.
//!
//! The library (`libgssapi_krb5.so.2`, and `libkrb5.so.3` for the default realm) is
//! loaded at run time with dlopen, only when a JAAS `Server` section names
//! `Krb5LoginModule`. Why not link it: linking needs the `-dev` package's unversioned
//! `.so` and headers (libkrb5-dev) on every machine that builds RingKeeper, and the
//! Rust bindings (`libgssapi`) generate them with bindgen, which needs libclang too; the
//! runtime library is already installed wherever Kerberos is used (and on any Debian
//! with OpenSSH). A missing library stops the server at start with a clear message.
//!
//! The exchange, one SASL packet per step:
//! 1. the client's GSS tokens go through `gss_accept_sec_context` with the acceptor
//!    credential of the JAAS principal (`zookeeper/host@REALM`) from its `keyTab`
//!    (`gss_acquire_cred_from`, so no process-wide keytab setting); its output tokens
//!    go back;
//! 2. once the context is established the server sends, wrapped (integrity only), the
//!    4-byte security-layer offer: layer 1 (none, ZooKeeper's only qop `auth`) and a
//!    65536-byte maximum buffer (if the context produced a final token, that goes
//!    first, and the offer answers the client's next, empty packet);
//! 3. the client's wrapped answer picks the layer (it must include 1) and may name an
//!    authorization id; the exchange is complete, answered with a null token.
//!
//! Failures are the JDK's: a GSS error, a packet after completion, data where none is
//! expected, a layer not offered are `SaslException`s (AUTHFAILED); an answer shorter
//! than 4 bytes throws an index exception in the JDK, which closes the connection.

use super::digest_md5::Fail;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::sync::OnceLock;

type Om = u32;

#[repr(C)]
struct Buffer {
    length: usize,
    value: *mut c_void,
}

impl Buffer {
    fn empty() -> Buffer {
        Buffer {
            length: 0,
            value: std::ptr::null_mut(),
        }
    }

    /// A view of `bytes` for input arguments (GSSAPI does not write to inputs).
    fn of(bytes: &[u8]) -> Buffer {
        Buffer {
            length: bytes.len(),
            value: bytes.as_ptr() as *mut c_void,
        }
    }
}

#[repr(C)]
struct OidDesc {
    length: u32,
    elements: *mut c_void,
}

type Oid = *mut OidDesc;

#[repr(C)]
struct KeyValue {
    key: *const c_char,
    value: *const c_char,
}

#[repr(C)]
struct KeyValueSet {
    count: u32,
    elements: *const KeyValue,
}

const GSS_S_COMPLETE: Om = 0;
const GSS_S_CONTINUE_NEEDED: Om = 1;
const GSS_C_ACCEPT: c_int = 2;
const GSS_C_INDEFINITE: Om = 0xffff_ffff;
const GSS_C_GSS_CODE: c_int = 1;
const GSS_C_MECH_CODE: c_int = 2;

fn is_error(major: Om) -> bool {
    major & 0xffff_0000 != 0
}

/// The library's functions we call.
struct Lib {
    import_name: unsafe extern "C" fn(*mut Om, *mut Buffer, Oid, *mut *mut c_void) -> Om,
    acquire_cred_from: unsafe extern "C" fn(
        *mut Om,
        *mut c_void,
        Om,
        *mut c_void,
        c_int,
        *const KeyValueSet,
        *mut *mut c_void,
        *mut *mut c_void,
        *mut Om,
    ) -> Om,
    accept_sec_context: unsafe extern "C" fn(
        *mut Om,
        *mut *mut c_void,
        *mut c_void,
        *mut Buffer,
        *mut c_void,
        *mut *mut c_void,
        *mut Oid,
        *mut Buffer,
        *mut Om,
        *mut Om,
        *mut *mut c_void,
    ) -> Om,
    display_name: unsafe extern "C" fn(*mut Om, *mut c_void, *mut Buffer, *mut Oid) -> Om,
    wrap: unsafe extern "C" fn(
        *mut Om,
        *mut c_void,
        c_int,
        Om,
        *mut Buffer,
        *mut c_int,
        *mut Buffer,
    ) -> Om,
    unwrap: unsafe extern "C" fn(
        *mut Om,
        *mut c_void,
        *mut Buffer,
        *mut Buffer,
        *mut c_int,
        *mut Om,
    ) -> Om,
    release_buffer: unsafe extern "C" fn(*mut Om, *mut Buffer) -> Om,
    release_name: unsafe extern "C" fn(*mut Om, *mut *mut c_void) -> Om,
    release_cred: unsafe extern "C" fn(*mut Om, *mut *mut c_void) -> Om,
    delete_sec_context: unsafe extern "C" fn(*mut Om, *mut *mut c_void, *mut Buffer) -> Om,
    display_status: unsafe extern "C" fn(*mut Om, Om, c_int, Oid, *mut Om, *mut Buffer) -> Om,
    /// `GSS_KRB5_NT_PRINCIPAL_NAME`: names like `zookeeper/host@REALM`.
    nt_principal: Oid,
}

// SAFETY: the fields are function pointers and a pointer to a constant OID inside the
// library, which stays loaded for the life of the process (never dlclose'd).
unsafe impl Send for Lib {}
unsafe impl Sync for Lib {}

/// dlsym `name` from `handle` as a `T` (a function pointer or a data address).
///
/// # Safety
/// `T` must be the symbol's real type (pointer-sized).
unsafe fn sym<T: Copy>(handle: *mut c_void, name: &str) -> Result<T, String> {
    let c = CString::new(name).map_err(|e| e.to_string())?;
    let p = libc::dlsym(handle, c.as_ptr());
    if p.is_null() {
        return Err(format!("symbol {name} not found"));
    }
    Ok(std::mem::transmute_copy::<*mut c_void, T>(&p))
}

fn open(lib: &str) -> Result<*mut c_void, String> {
    let c = CString::new(lib).map_err(|e| e.to_string())?;
    // SAFETY: a valid C string; loading a system library runs its initialisers only.
    let h = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    if h.is_null() {
        // SAFETY: dlerror returns a C string or null.
        let why = unsafe {
            let e = libc::dlerror();
            if e.is_null() {
                "unknown error".to_string()
            } else {
                CStr::from_ptr(e).to_string_lossy().into_owned()
            }
        };
        return Err(format!(
            "cannot load {lib} ({why}): GSSAPI needs MIT Kerberos' library (Debian: libgssapi-krb5-2)"
        ));
    }
    Ok(h)
}

fn load() -> Result<Lib, String> {
    let h = open("libgssapi_krb5.so.2")?;
    // SAFETY: each type is the function's (or variable's) C declaration in MIT's
    // gssapi.h / gssapi_ext.h / gssapi_krb5.h.
    unsafe {
        let nt: *mut Oid = sym(h, "GSS_KRB5_NT_PRINCIPAL_NAME")?;
        Ok(Lib {
            import_name: sym(h, "gss_import_name")?,
            acquire_cred_from: sym(h, "gss_acquire_cred_from")?,
            accept_sec_context: sym(h, "gss_accept_sec_context")?,
            display_name: sym(h, "gss_display_name")?,
            wrap: sym(h, "gss_wrap")?,
            unwrap: sym(h, "gss_unwrap")?,
            release_buffer: sym(h, "gss_release_buffer")?,
            release_name: sym(h, "gss_release_name")?,
            release_cred: sym(h, "gss_release_cred")?,
            delete_sec_context: sym(h, "gss_delete_sec_context")?,
            display_status: sym(h, "gss_display_status")?,
            nt_principal: *nt,
        })
    }
}

fn lib() -> Result<&'static Lib, String> {
    static LIB: OnceLock<Result<Lib, String>> = OnceLock::new();
    LIB.get_or_init(load).as_ref().map_err(Clone::clone)
}

/// Whether the GSSAPI library can be loaded (checked at start).
///
/// # Errors
/// Why it cannot.
pub fn available() -> Result<(), String> {
    lib().map(|_| ())
}

/// The Kerberos default realm (`krb5_get_default_realm`, from the krb5.conf that
/// `KRB5_CONFIG` or /etc/krb5.conf names); empty when there is none, as Java's
/// `KerberosName` has it.
pub fn default_realm() -> String {
    type Init = unsafe extern "C" fn(*mut *mut c_void) -> i32;
    type Get = unsafe extern "C" fn(*mut c_void, *mut *mut c_char) -> i32;
    type FreeRealm = unsafe extern "C" fn(*mut c_void, *mut c_char);
    type FreeCtx = unsafe extern "C" fn(*mut c_void);
    let Ok(h) = open("libkrb5.so.3") else {
        return String::new();
    };
    // SAFETY: the types are MIT krb5.h's; the context and realm are freed with the
    // library's own functions.
    unsafe {
        let (Ok(init), Ok(get), Ok(free_realm), Ok(free_ctx)) = (
            sym::<Init>(h, "krb5_init_context"),
            sym::<Get>(h, "krb5_get_default_realm"),
            sym::<FreeRealm>(h, "krb5_free_default_realm"),
            sym::<FreeCtx>(h, "krb5_free_context"),
        ) else {
            return String::new();
        };
        let mut ctx = std::ptr::null_mut();
        if init(&mut ctx) != 0 {
            return String::new();
        }
        let mut realm = std::ptr::null_mut();
        let out = if get(ctx, &mut realm) == 0 && !realm.is_null() {
            let r = CStr::from_ptr(realm).to_string_lossy().into_owned();
            free_realm(ctx, realm);
            r
        } else {
            String::new()
        };
        free_ctx(ctx);
        out
    }
}

/// The text of a GSS status (major and minor codes).
fn status(l: &Lib, major: Om, minor: Om) -> String {
    let mut parts = Vec::new();
    for (code, kind) in [(major, GSS_C_GSS_CODE), (minor, GSS_C_MECH_CODE)] {
        if code == 0 {
            continue;
        }
        let mut ctx: Om = 0;
        // display_status hands the message out in pieces; bounded in case a library
        // never says it is done.
        for _ in 0..8 {
            let mut min: Om = 0;
            let mut buf = Buffer::empty();
            // SAFETY: out-parameters are valid; the buffer is released below.
            let r = unsafe {
                (l.display_status)(
                    &mut min,
                    code,
                    kind,
                    std::ptr::null_mut(),
                    &mut ctx,
                    &mut buf,
                )
            };
            if is_error(r) {
                break;
            }
            parts.push(take(l, &mut buf));
            if ctx == 0 {
                break;
            }
        }
    }
    parts.join("; ")
}

/// Copies a buffer the library allocated and releases it.
fn take(l: &Lib, buf: &mut Buffer) -> String {
    String::from_utf8_lossy(&take_bytes(l, buf)).into_owned()
}

fn take_bytes(l: &Lib, buf: &mut Buffer) -> Vec<u8> {
    let v = if buf.value.is_null() || buf.length == 0 {
        Vec::new()
    } else {
        // SAFETY: the library gave `length` readable bytes at `value`.
        unsafe { std::slice::from_raw_parts(buf.value as *const u8, buf.length).to_vec() }
    };
    let mut min = 0;
    // SAFETY: a buffer the library allocated (or an empty one, which it ignores).
    unsafe { (l.release_buffer)(&mut min, buf) };
    v
}

/// The server's Kerberos identity from its JAAS section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acceptor {
    /// `zookeeper/host@REALM`.
    pub principal: String,
    pub keytab: String,
}

/// What a step produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Send this token (possibly empty); the exchange goes on.
    Continue(Vec<u8>),
    /// The client is authenticated as `peer` (its principal), asking to act as
    /// `authzid`; the answer carries a null token.
    Complete {
        peer: String,
        authzid: Option<String>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// Exchanging GSS context tokens.
    Context,
    /// Established, with a final context token sent: the client's next (empty)
    /// packet gets the security-layer offer.
    Offer,
    /// The offer is out; the client's wrapped choice comes next.
    Choice,
    Done,
}

/// One connection's GSSAPI exchange.
pub struct Server {
    ctx: *mut c_void,
    cred: *mut c_void,
    stage: Stage,
    peer: String,
}

// SAFETY: the context and credential handles belong to this connection alone and are
// used only by the thread that owns the connection at the time; MIT's GSSAPI handles
// are not bound to the thread that created them.
unsafe impl Send for Server {}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("gssapi::Server")
            .field("stage", &self.stage)
            .field("peer", &self.peer)
            .finish()
    }
}

/// Security layers (RFC 4752): 1 = none, the only one ZooKeeper's qop `auth` offers.
const LAYER_NONE: u8 = 1;
/// The JDK's default receive buffer size, offered in the layer message.
const MAX_BUF: u32 = 65536;

impl Server {
    /// A server holding `acc`'s acceptor credential.
    ///
    /// # Errors
    /// The library is missing, or the keytab has no key for the principal.
    pub fn new(acc: &Acceptor) -> Result<Server, String> {
        let l = lib()?;
        let mut min: Om = 0;
        let mut name = std::ptr::null_mut();
        let mut nb = Buffer::of(acc.principal.as_bytes());
        // SAFETY: valid in/out parameters; the name is released below.
        let maj = unsafe { (l.import_name)(&mut min, &mut nb, l.nt_principal, &mut name) };
        if is_error(maj) {
            return Err(format!(
                "principal {}: {}",
                acc.principal,
                status(l, maj, min)
            ));
        }
        let key = CString::new("keytab").expect("no NUL");
        let val = CString::new(acc.keytab.as_str())
            .map_err(|_| format!("keyTab {:?} contains a NUL", acc.keytab))?;
        let kv = [KeyValue {
            key: key.as_ptr(),
            value: val.as_ptr(),
        }];
        let store = KeyValueSet {
            count: 1,
            elements: kv.as_ptr(),
        };
        let mut cred = std::ptr::null_mut();
        // SAFETY: as above; the cred store outlives the call.
        let maj = unsafe {
            (l.acquire_cred_from)(
                &mut min,
                name,
                GSS_C_INDEFINITE,
                std::ptr::null_mut(),
                GSS_C_ACCEPT,
                &store,
                &mut cred,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
        let mut m2 = 0;
        // SAFETY: the name imported above.
        unsafe { (l.release_name)(&mut m2, &mut name) };
        if is_error(maj) {
            return Err(format!(
                "no acceptor credential for {} in keytab {}: {}",
                acc.principal,
                acc.keytab,
                status(l, maj, min)
            ));
        }
        Ok(Server {
            ctx: std::ptr::null_mut(),
            cred,
            stage: Stage::Context,
            peer: String::new(),
        })
    }

    /// Runs one step on the client's `token`.
    ///
    /// # Errors
    /// [`Fail`] as the JDK would fail: see the module header.
    pub fn step(&mut self, token: &[u8]) -> Result<Step, Fail> {
        let l = lib().map_err(Fail::Sasl)?;
        match self.stage {
            Stage::Done => Err(Fail::Sasl("SASL authentication already complete".into())),
            Stage::Context => self.accept(l, token),
            Stage::Offer => self.offer(l, token),
            Stage::Choice => self.choice(l, token),
        }
    }

    fn accept(&mut self, l: &Lib, token: &[u8]) -> Result<Step, Fail> {
        // The JDK's acceptor refuses an empty token (a DIGEST-MD5 client's first packet)
        // as defective; MIT's would wait for more.
        if token.is_empty() {
            return Err(Fail::Sasl(
                "GSS initiate failed: Defective token detected (the token is empty)".into(),
            ));
        }
        let mut min: Om = 0;
        let mut input = Buffer::of(token);
        let mut out = Buffer::empty();
        let mut src = std::ptr::null_mut();
        // SAFETY: valid handles and out-parameters; `out` and `src` are released below.
        let maj = unsafe {
            (l.accept_sec_context)(
                &mut min,
                &mut self.ctx,
                self.cred,
                &mut input,
                std::ptr::null_mut(),
                &mut src,
                std::ptr::null_mut(),
                &mut out,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
        let out = take_bytes(l, &mut out);
        if is_error(maj) {
            if !src.is_null() {
                // SAFETY: a name the library returned.
                unsafe { (l.release_name)(&mut 0, &mut src) };
            }
            return Err(Fail::Sasl(format!(
                "GSS initiate failed: {}",
                status(l, maj, min)
            )));
        }
        if maj & 0xffff == GSS_S_CONTINUE_NEEDED {
            if !src.is_null() {
                // SAFETY: as above.
                unsafe { (l.release_name)(&mut 0, &mut src) };
            }
            return Ok(Step::Continue(out));
        }
        debug_assert_eq!(maj & 0xffff, GSS_S_COMPLETE);
        let mut nb = Buffer::empty();
        // SAFETY: the source name of the established context, released after.
        let maj = unsafe { (l.display_name)(&mut min, src, &mut nb, std::ptr::null_mut()) };
        self.peer = take(l, &mut nb);
        // SAFETY: as above.
        unsafe { (l.release_name)(&mut 0, &mut src) };
        if is_error(maj) {
            return Err(Fail::Sasl(format!(
                "GSS initiate failed: {}",
                status(l, maj, min)
            )));
        }
        if out.is_empty() {
            self.offer(l, &[])
        } else {
            self.stage = Stage::Offer;
            Ok(Step::Continue(out))
        }
    }

    /// The JDK's `doHandshake1`: the wrapped security-layer offer.
    fn offer(&mut self, l: &Lib, token: &[u8]) -> Result<Step, Fail> {
        if !token.is_empty() {
            return Err(Fail::Sasl(
                "Handshake expecting no response data from server".into(),
            ));
        }
        let m = MAX_BUF.to_be_bytes();
        let msg = [LAYER_NONE, m[1], m[2], m[3]];
        let mut min: Om = 0;
        let mut input = Buffer::of(&msg);
        let mut out = Buffer::empty();
        // SAFETY: an established context; `out` is released by take_bytes.
        let maj = unsafe {
            (l.wrap)(
                &mut min,
                self.ctx,
                0,
                0,
                &mut input,
                std::ptr::null_mut(),
                &mut out,
            )
        };
        let out = take_bytes(l, &mut out);
        if is_error(maj) {
            return Err(Fail::Sasl(format!(
                "Problem wrapping handshake1: {}",
                status(l, maj, min)
            )));
        }
        self.stage = Stage::Choice;
        Ok(Step::Continue(out))
    }

    /// The JDK's `doHandshake2`: the client's wrapped choice.
    fn choice(&mut self, l: &Lib, token: &[u8]) -> Result<Step, Fail> {
        let mut min: Om = 0;
        let mut input = Buffer::of(token);
        let mut out = Buffer::empty();
        // SAFETY: an established context; `out` is released by take_bytes.
        let maj = unsafe {
            (l.unwrap)(
                &mut min,
                self.ctx,
                &mut input,
                &mut out,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
        let msg = take_bytes(l, &mut out);
        if is_error(maj) {
            return Err(Fail::Sasl(format!(
                "Final handshake step failed: {}",
                status(l, maj, min)
            )));
        }
        if msg.is_empty() {
            return Err(Fail::Broken(
                "GSSAPI: the client's security-layer answer is empty".into(),
            ));
        }
        if msg[0] & LAYER_NONE == 0 {
            return Err(Fail::Sasl(format!(
                "Client selected unsupported protection: {}",
                msg[0] as i8
            )));
        }
        if msg.len() < 4 {
            return Err(Fail::Broken(format!(
                "GSSAPI: the client's security-layer answer has {} bytes, not 4",
                msg.len()
            )));
        }
        self.stage = Stage::Done;
        let authzid = (msg.len() > 4).then(|| String::from_utf8_lossy(&msg[4..]).into_owned());
        Ok(Step::Complete {
            peer: self.peer.clone(),
            authzid,
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let Ok(l) = lib() else { return };
        let mut min = 0;
        // SAFETY: handles this server owns (null ones are ignored by the library).
        unsafe {
            if !self.ctx.is_null() {
                (l.delete_sec_context)(&mut min, &mut self.ctx, std::ptr::null_mut());
            }
            if !self.cred.is_null() {
                (l.release_cred)(&mut min, &mut self.cred);
            }
        }
    }
}
