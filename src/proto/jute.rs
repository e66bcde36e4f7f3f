//! Jute binary encoding primitives: big-endian ints and longs, one-byte booleans,
//! length-prefixed buffers, strings and vectors, as `zookeeper.jute` defines them.
//!
//! Pure: no I/O. The decoder never panics on any input; every failure is a
//! [`DecodeError`] naming what was being read.

use bytes::Bytes;
use std::fmt;

/// Why a record could not be decoded. The connection that sent it is closed, as ZooKeeper
/// does on a marshalling error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The input ended while `what` was being read.
    Truncated { what: &'static str },
    /// A length prefix was negative (other than the -1 null marker) or exceeds the bytes
    /// that remain.
    BadLength { what: &'static str, len: i64 },
    /// A string was not valid UTF-8.
    BadUtf8 { what: &'static str },
    /// A boolean byte other than 0 or 1.
    BadBool { what: &'static str, value: u8 },
    /// A value outside the range its field allows (an unknown opcode, a bad multi header).
    BadValue { what: &'static str, value: i64 },
    /// Bytes left over after a record that must fill its frame.
    TrailingBytes { what: &'static str, left: usize },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Truncated { what } => write!(f, "truncated while reading {what}"),
            DecodeError::BadLength { what, len } => write!(f, "bad length {len} for {what}"),
            DecodeError::BadUtf8 { what } => write!(f, "{what} is not valid UTF-8"),
            DecodeError::BadBool { what, value } => write!(f, "bad boolean {value} for {what}"),
            DecodeError::BadValue { what, value } => write!(f, "bad value {value} for {what}"),
            DecodeError::TrailingBytes { what, left } => {
                write!(f, "{left} trailing bytes after {what}")
            }
        }
    }
}

impl std::error::Error for DecodeError {}

pub type Result<T> = std::result::Result<T, DecodeError>;

/// A cursor over one frame's payload.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// The `Bytes` that `buf` is, when the caller has one: buffers are then slices of
    /// it instead of copies.
    shared: Option<&'a Bytes>,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader {
            buf,
            pos: 0,
            shared: None,
        }
    }

    /// A cursor over `buf` that starts at `pos` (clamped to its end), so that positions
    /// stay offsets into `buf`.
    pub fn at(buf: &'a [u8], pos: usize) -> Self {
        Reader {
            buf,
            pos: pos.min(buf.len()),
            shared: None,
        }
    }

    /// [`Reader::at`] over shared bytes: [`Reader::read_buffer`] returns slices of
    /// `buf` (no copy; they keep its allocation alive).
    pub fn at_shared(buf: &'a Bytes, pos: usize) -> Self {
        Reader {
            buf,
            pos: pos.min(buf.len()),
            shared: Some(buf),
        }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// Fails unless every byte was consumed.
    pub fn finish(&self, what: &'static str) -> Result<()> {
        match self.remaining() {
            0 => Ok(()),
            left => Err(DecodeError::TrailingBytes { what, left }),
        }
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8]> {
        if self.remaining() < n {
            return Err(DecodeError::Truncated { what });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub fn read_i32(&mut self, what: &'static str) -> Result<i32> {
        let b = self.take(4, what)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn read_i64(&mut self, what: &'static str) -> Result<i64> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }

    pub fn read_bool(&mut self, what: &'static str) -> Result<bool> {
        match self.take(1, what)?[0] {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(DecodeError::BadBool { what, value }),
        }
    }

    /// A length prefix: -1 is null (`None`); any other negative value, or one larger than
    /// what remains times `min_elem_size`, is an error (so a hostile count cannot make us
    /// allocate).
    fn read_len(&mut self, what: &'static str, min_elem_size: usize) -> Result<Option<usize>> {
        let len = self.read_i32(what)?;
        if len == -1 {
            return Ok(None);
        }
        if len < 0 || (len as usize).saturating_mul(min_elem_size) > self.remaining() {
            return Err(DecodeError::BadLength {
                what,
                len: len as i64,
            });
        }
        Ok(Some(len as usize))
    }

    /// A jute `buffer`; -1 decodes as `None` (ZooKeeper keeps null data distinct from empty).
    pub fn read_buffer(&mut self, what: &'static str) -> Result<Option<Bytes>> {
        match self.read_len(what, 1)? {
            None => Ok(None),
            Some(n) => {
                let start = self.pos;
                let b = self.take(n, what)?;
                Ok(Some(match self.shared {
                    Some(src) => src.slice(start..start + n),
                    None => Bytes::copy_from_slice(b),
                }))
            }
        }
    }

    /// A jute `ustring`; a null string decodes as empty (every server-side use of a null
    /// string is rejected later as an invalid path or id, as in ZooKeeper).
    pub fn read_string(&mut self, what: &'static str) -> Result<String> {
        match self.read_len(what, 1)? {
            None => Ok(String::new()),
            Some(n) => {
                let b = self.take(n, what)?;
                String::from_utf8(b.to_vec()).map_err(|_| DecodeError::BadUtf8 { what })
            }
        }
    }

    /// A jute `vector<T>`; null decodes as empty.
    pub fn read_vec<T: Jute>(&mut self, what: &'static str) -> Result<Vec<T>> {
        match self.read_len(what, T::MIN_SIZE)? {
            None => Ok(Vec::new()),
            Some(n) => {
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(T::read(self)?);
                }
                Ok(v)
            }
        }
    }
}

/// Appends jute encodings to a byte vector.
pub trait Writer {
    fn put_i32(&mut self, v: i32);
    fn put_i64(&mut self, v: i64);
    fn put_bool(&mut self, v: bool);
    fn put_buffer(&mut self, v: Option<&[u8]>);
    fn put_string(&mut self, v: &str);
    fn put_vec<T: Jute>(&mut self, v: &[T]);
}

impl Writer for Vec<u8> {
    fn put_i32(&mut self, v: i32) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_i64(&mut self, v: i64) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_bool(&mut self, v: bool) {
        self.push(v as u8);
    }
    fn put_buffer(&mut self, v: Option<&[u8]>) {
        match v {
            None => self.put_i32(-1),
            Some(b) => {
                self.put_i32(i32::try_from(b.len()).expect("buffer longer than 2 GiB"));
                self.extend_from_slice(b);
            }
        }
    }
    fn put_string(&mut self, v: &str) {
        self.put_i32(i32::try_from(v.len()).expect("string longer than 2 GiB"));
        self.extend_from_slice(v.as_bytes());
    }
    fn put_vec<T: Jute>(&mut self, v: &[T]) {
        self.put_i32(i32::try_from(v.len()).expect("vector longer than 2^31"));
        for e in v {
            e.write(self);
        }
    }
}

/// A jute record: encodes to and decodes from its wire form.
pub trait Jute: Sized {
    /// The fewest bytes one encoded value takes; bounds vector counts before allocating.
    const MIN_SIZE: usize;
    fn write(&self, out: &mut Vec<u8>);
    fn read(r: &mut Reader<'_>) -> Result<Self>;

    /// Encodes into a fresh vector.
    fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.write(&mut v);
        v
    }

    /// Decodes a value that must fill `buf` exactly.
    fn from_bytes(buf: &[u8]) -> Result<Self> {
        let mut r = Reader::new(buf);
        let v = Self::read(&mut r)?;
        r.finish(std::any::type_name::<Self>())?;
        Ok(v)
    }
}

impl Jute for String {
    const MIN_SIZE: usize = 4;
    fn write(&self, out: &mut Vec<u8>) {
        out.put_string(self)
    }
    fn read(r: &mut Reader<'_>) -> Result<Self> {
        r.read_string("string")
    }
}

/// Field kinds the `jute_record!` macro knows how to encode.
pub trait Field: Sized {
    const MIN_SIZE: usize;
    fn put(&self, out: &mut Vec<u8>);
    fn get(r: &mut Reader<'_>, what: &'static str) -> Result<Self>;
}

impl Field for i32 {
    const MIN_SIZE: usize = 4;
    fn put(&self, out: &mut Vec<u8>) {
        out.put_i32(*self)
    }
    fn get(r: &mut Reader<'_>, what: &'static str) -> Result<Self> {
        r.read_i32(what)
    }
}

impl Field for i64 {
    const MIN_SIZE: usize = 8;
    fn put(&self, out: &mut Vec<u8>) {
        out.put_i64(*self)
    }
    fn get(r: &mut Reader<'_>, what: &'static str) -> Result<Self> {
        r.read_i64(what)
    }
}

impl Field for bool {
    const MIN_SIZE: usize = 1;
    fn put(&self, out: &mut Vec<u8>) {
        out.put_bool(*self)
    }
    fn get(r: &mut Reader<'_>, what: &'static str) -> Result<Self> {
        r.read_bool(what)
    }
}

impl Field for String {
    const MIN_SIZE: usize = 4;
    fn put(&self, out: &mut Vec<u8>) {
        out.put_string(self)
    }
    fn get(r: &mut Reader<'_>, what: &'static str) -> Result<Self> {
        r.read_string(what)
    }
}

impl Field for Option<Bytes> {
    const MIN_SIZE: usize = 4;
    fn put(&self, out: &mut Vec<u8>) {
        out.put_buffer(self.as_deref())
    }
    fn get(r: &mut Reader<'_>, what: &'static str) -> Result<Self> {
        r.read_buffer(what)
    }
}

impl<T: Jute> Field for Vec<T> {
    const MIN_SIZE: usize = 4;
    fn put(&self, out: &mut Vec<u8>) {
        out.put_vec(self)
    }
    fn get(r: &mut Reader<'_>, what: &'static str) -> Result<Self> {
        r.read_vec(what)
    }
}

/// Declares a jute record: a struct whose fields are encoded in declaration order.
/// Nested records are fields too (every `Jute` type is a `Field` through the blanket
/// impl below).
#[macro_export]
macro_rules! jute_record {
    ($(#[$m:meta])* pub struct $name:ident { $($(#[$fm:meta])* pub $f:ident : $t:ty),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, Default)]
        pub struct $name { $($(#[$fm])* pub $f: $t),* }

        impl $crate::proto::jute::Jute for $name {
            const MIN_SIZE: usize = 0 $(+ <$t as $crate::proto::jute::Field>::MIN_SIZE)*;
            fn write(&self, out: &mut Vec<u8>) {
                $( <$t as $crate::proto::jute::Field>::put(&self.$f, out); )*
            }
            fn read(r: &mut $crate::proto::jute::Reader<'_>) -> $crate::proto::jute::Result<Self> {
                Ok($name { $($f: <$t as $crate::proto::jute::Field>::get(r, concat!(stringify!($name), ".", stringify!($f)))?),* })
            }
        }
    };
}

/// Records nested as fields (Stat inside responses, Id inside ACL). Vectors of records
/// use `Jute` directly, so this is a separate wrapper trait to avoid overlapping impls.
pub trait Nested: Jute {}

impl<T: Nested> Field for T {
    const MIN_SIZE: usize = <T as Jute>::MIN_SIZE;
    fn put(&self, out: &mut Vec<u8>) {
        self.write(out)
    }
    fn get(r: &mut Reader<'_>, _what: &'static str) -> Result<Self> {
        T::read(r)
    }
}
