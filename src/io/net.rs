//! Plain socket system calls the reactor needs outside the ring: creating a
//! `SO_REUSEPORT` listener, preparing accepted sockets, and the wake-up eventfd.
//!
//! These run once per listener or connection, never per byte, so blocking-free
//! synchronous calls are simpler than ring operations and cost nothing measurable.

use std::io;
use std::mem;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// Creates a TCP listening socket on `addr` with `SO_REUSEADDR` and `SO_REUSEPORT`.
///
/// Every shard binds its own listener on the same port and the kernel spreads
/// incoming connections between them. The socket is close-on-exec and blocking:
/// io_uring never blocks on it, and the std type gives us `local_addr()`.
///
/// # Errors
/// Any failing `socket`, `setsockopt`, `bind` or `listen` (e.g. `EADDRINUSE` when
/// another process without `SO_REUSEPORT` holds the port).
pub(crate) fn listen_reuseport(addr: SocketAddr, backlog: i32) -> io::Result<TcpListener> {
    let domain = match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    // SAFETY: plain system call with constant arguments; the result is checked.
    let raw = unsafe { libc::socket(domain, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    set_int_opt(raw, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
    set_int_opt(raw, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
    let (storage, len) = to_raw_addr(&addr);
    // SAFETY: `storage` holds a valid sockaddr of `len` bytes for the socket's family.
    let rc = unsafe { libc::bind(raw, (&storage as *const libc::sockaddr_storage).cast(), len) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: plain system call on a descriptor we own.
    if unsafe { libc::listen(raw, backlog) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(TcpListener::from(fd))
}

/// Fails with `AddrInUse` when another socket already listens on `addr` (port 0: never).
///
/// `SO_REUSEPORT` lets any process of the same user bind a port that a server of ours
/// already listens on, and the kernel then deals connections between the two: a
/// second server started by mistake would take half the clients silently. A bind
/// without it, closed at once, fails where any listener holds the port, so a server
/// checks before it listens, as ZooKeeper's plain bind refuses a taken port.
///
/// # Errors
/// `AddrInUse`, saying so; any other bind failure as it is.
pub(crate) fn refuse_if_taken(addr: SocketAddr) -> io::Result<()> {
    if addr.port() == 0 {
        return Ok(());
    }
    match TcpListener::bind(addr) {
        Ok(probe) => {
            drop(probe);
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("{addr} is already in use by another process ({e})"),
        )),
        Err(e) => Err(e),
    }
}

/// Prepares a socket the ring accepted: `TCP_NODELAY` on, peer address read.
///
/// Takes ownership of `raw`. On error the descriptor is closed here.
pub(crate) fn prepare_accepted(raw: RawFd) -> io::Result<(OwnedFd, SocketAddr)> {
    // SAFETY: the ring handed us a fresh descriptor (a non-negative accept result)
    // that nothing else owns; wrapping it transfers ownership.
    let stream = unsafe { TcpStream::from_raw_fd(raw) };
    prepare_stream(stream)
}

/// Prepares an already connected stream for the reactor (see `prepare_accepted`).
pub(crate) fn prepare_stream(stream: TcpStream) -> io::Result<(OwnedFd, SocketAddr)> {
    // Requests and replies are small and latency-bound; Nagle would hold them back.
    stream.set_nodelay(true)?;
    let peer = stream.peer_addr()?;
    Ok((OwnedFd::from(stream), peer))
}

/// Creates the non-blocking, close-on-exec eventfd that other threads write to wake a ring.
pub(crate) fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: plain system call with constant arguments; the result is checked.
    let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Adds one to an eventfd counter.
pub(crate) fn eventfd_signal(fd: RawFd) {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a live local to a descriptor the caller keeps open.
    let rc = unsafe { libc::write(fd, (&one as *const u64).cast(), mem::size_of::<u64>()) };
    if rc < 0 {
        match io::Error::last_os_error().raw_os_error() {
            // The counter is at its maximum (2^64 - 2): the reader has a wake-up pending
            // already, so dropping this one loses nothing.
            Some(libc::EAGAIN) => {}
            // A signal interrupted the write before it happened; a wake-up must not be
            // lost, so try once more (EINTR cannot repeat forever on an eventfd write).
            Some(libc::EINTR) => eventfd_signal(fd),
            // EBADF/EINVAL would mean the eventfd was closed under a live Waker: a bug.
            other => panic!("eventfd write failed: errno {other:?}"),
        }
    }
}

fn set_int_opt(fd: RawFd, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: passes a pointer to a live i32 and its exact size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const i32).cast(),
            mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn to_raw_addr(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain old data; all zeroes is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe {
                (&mut storage as *mut libc::sockaddr_storage)
                    .cast::<libc::sockaddr_in>()
                    .write(sin)
            };
            mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe {
                (&mut storage as *mut libc::sockaddr_storage)
                    .cast::<libc::sockaddr_in6>()
                    .write(sin6)
            };
            mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_another_socket_listens_on_is_refused_even_with_reuseport() {
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        // A server of ours (SO_REUSEPORT): a second one would otherwise share its port.
        let ours = listen_reuseport(any, 16).unwrap();
        let addr = ours.local_addr().unwrap();
        assert!(
            listen_reuseport(addr, 16).is_ok(),
            "the kernel lets it share"
        );
        let e = refuse_if_taken(addr).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        assert!(e.to_string().contains(&addr.to_string()), "{e}");
        // Any other listener too.
        let plain = TcpListener::bind(any).unwrap();
        let e = refuse_if_taken(plain.local_addr().unwrap()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        // Once closed, the port is free again; port 0 is never refused.
        drop(ours);
        assert!(refuse_if_taken(addr).is_ok());
        assert!(refuse_if_taken(any).is_ok());
    }
}
