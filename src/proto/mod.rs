//! The ZooKeeper client wire protocol: jute primitives, records, numeric codes, and
//! (in `request`) the decoding of a whole client frame into a typed [`request::Request`].
//!
//! Pure: imports nothing from `io`, `server`, `std::net` or `std::fs`.

pub mod codes;
pub mod frame;
pub mod jute;
pub mod records;
pub mod request;

pub use codes::*;
pub use jute::{DecodeError, Jute, Reader, Writer};
pub use records::*;
pub use request::{MultiOp, Request};

/// `jute.maxbuffer`'s default: the largest frame ZooKeeper accepts (0xfffff bytes).
pub const DEFAULT_MAX_BUFFER: usize = 0xfffff;
