//! The start-up probe: can this kernel, in this sandbox, run our rings?
//!
//! The server calls [`probe`] before starting any shard and exits with the error's
//! message when it fails. There is no epoll fallback: a server that silently ran
//! on another engine would have different performance and failure behaviour.

use std::fmt;
use std::io;

use io_uring::{opcode, register::Probe, IoUring};

/// What the probe found; the reactor sets its ring up accordingly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Features {
    /// SINGLE_ISSUER | DEFER_TASKRUN accepted (kernel 6.1+). Otherwise the rings use
    /// COOP_TASKRUN | TASKRUN_FLAG, which costs a little more per completion.
    pub defer_taskrun: bool,
    /// IORING_OP_MSG_RING is supported. Not needed today (wake-ups use an eventfd,
    /// see `Waker`), reported so a later ring-to-ring wake-up can rely on it.
    pub msg_ring: bool,
    /// The kernel release (`uname -r`), for logs.
    pub kernel: String,
}

/// Why io_uring cannot be used here. `Display` names the likely cause and the fix.
#[derive(Debug)]
pub enum ProbeError {
    /// `kernel.io_uring_disabled` is 2 (off for everyone) or 1 (only for members of
    /// `kernel.io_uring_group`) and ring creation failed.
    DisabledBySysctl { value: u8, error: io::Error },
    /// Ring creation was refused (EPERM) or the system call does not exist (ENOSYS)
    /// and the sysctl allows it: a seccomp profile, or a kernel without io_uring.
    Denied { error: io::Error },
    /// Ring creation failed for another reason (e.g. ENOMEM: memory or memlock limit).
    Setup { error: io::Error },
    /// An opcode we need is missing: the kernel is too old.
    MissingOpcode { name: &'static str, kernel: String },
    /// A feature we need is missing: the kernel is too old.
    MissingFeature {
        name: &'static str,
        kernel: String,
        error: Option<io::Error>,
    },
}

/// The oldest kernel with everything we use: multishot receive (6.0) and
/// DEFER_TASKRUN (6.1, optional but expected).
const MIN_KERNEL: (u32, u32) = (6, 0);

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeError::DisabledBySysctl { value, error } => write!(
                f,
                "io_uring is disabled by the kernel.io_uring_disabled sysctl (value {value}) \
                 [{error}]. Fix: `sysctl -w kernel.io_uring_disabled=0` (or, for value 1, run \
                 as a member of the group in kernel.io_uring_group). RingKeeper has no epoll \
                 fallback."
            ),
            ProbeError::Denied { error } => write!(
                f,
                "the kernel refused to create an io_uring [{error}]. Likely cause: a seccomp \
                 profile that blocks io_uring_setup/io_uring_enter/io_uring_register (Docker \
                 25+ and many container runtimes do by default), or a kernel built without \
                 CONFIG_IO_URING. Fix: run with a seccomp profile that allows those three \
                 system calls (e.g. `docker run --security-opt seccomp=<profile>`), or a \
                 kernel with io_uring. RingKeeper has no epoll fallback."
            ),
            ProbeError::Setup { error } => write!(
                f,
                "creating an io_uring failed [{error}]. If this is ENOMEM, raise the memory \
                 or locked-memory limit (`ulimit -l`, LimitMEMLOCK= in systemd) or lower the \
                 ring size."
            ),
            ProbeError::MissingOpcode { name, kernel } => write!(
                f,
                "the kernel ({kernel}) lacks the io_uring operation {name}. Fix: run on Linux \
                 {}.{} or newer.",
                MIN_KERNEL.0, MIN_KERNEL.1
            ),
            ProbeError::MissingFeature {
                name,
                kernel,
                error,
            } => {
                write!(f, "the kernel ({kernel}) lacks the io_uring feature {name}")?;
                if let Some(e) = error {
                    write!(f, " [{e}]")?;
                }
                write!(
                    f,
                    ". Fix: run on Linux {}.{} or newer.",
                    MIN_KERNEL.0, MIN_KERNEL.1
                )
            }
        }
    }
}

impl std::error::Error for ProbeError {}

/// Checks that rings with everything the reactor uses can be created here.
///
/// Creates a small ring (DEFER_TASKRUN, falling back to COOP_TASKRUN), asks the
/// kernel which opcodes it supports (accept, recv, send, close, timeout, read,
/// async cancel), registers a provided-buffer ring, and checks the kernel version
/// for multishot receive, which the opcode probe cannot see.
///
/// # Errors
/// A [`ProbeError`] whose message names the likely cause and the fix.
pub fn probe() -> Result<Features, ProbeError> {
    let kernel = kernel_release();
    let (ring, defer_taskrun) = build_ring(8, 16)?;
    let mut p = Probe::new();
    ring.submitter()
        .register_probe(&mut p)
        .map_err(|error| ProbeError::MissingFeature {
            name: "IORING_REGISTER_PROBE",
            kernel: kernel.clone(),
            error: Some(error),
        })?;
    let needed: [(u8, &'static str); 8] = [
        (opcode::Accept::CODE, "IORING_OP_ACCEPT"),
        (opcode::RecvMulti::CODE, "IORING_OP_RECV"),
        (opcode::Send::CODE, "IORING_OP_SEND"),
        (opcode::Close::CODE, "IORING_OP_CLOSE"),
        (opcode::Timeout::CODE, "IORING_OP_TIMEOUT"),
        (opcode::Read::CODE, "IORING_OP_READ"),
        (opcode::AsyncCancel::CODE, "IORING_OP_ASYNC_CANCEL"),
        (opcode::PollAdd::CODE, "IORING_OP_POLL_ADD"),
    ];
    for (code, name) in needed {
        if !p.is_supported(code) {
            return Err(ProbeError::MissingOpcode { name, kernel });
        }
    }
    if parse_release(&kernel).is_some_and(|v| v < MIN_KERNEL) {
        return Err(ProbeError::MissingFeature {
            name: "multishot receive (IORING_RECV_MULTISHOT)",
            kernel,
            error: None,
        });
    }
    // A provided-buffer ring of one buffer: the registration itself is the test.
    super::bufring::BufRing::new(&ring, 0, 1, 64).map_err(|error| ProbeError::MissingFeature {
        name: "provided-buffer rings (IORING_REGISTER_PBUF_RING)",
        kernel: kernel.clone(),
        error: Some(error),
    })?;
    Ok(Features {
        defer_taskrun,
        msg_ring: p.is_supported(opcode::MsgRingData::CODE),
        kernel,
    })
}

/// Creates a ring with SINGLE_ISSUER | DEFER_TASKRUN, or COOP_TASKRUN on kernels
/// that reject those (EINVAL). Returns whether DEFER_TASKRUN is on.
///
/// The ring must be driven only by the calling thread (SINGLE_ISSUER).
pub(crate) fn build_ring(sq_entries: u32, cq_entries: u32) -> Result<(IoUring, bool), ProbeError> {
    let defer = IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_taskrun_flag()
        .setup_submit_all()
        .setup_cqsize(cq_entries)
        .build(sq_entries);
    match defer {
        Ok(ring) => return Ok((ring, true)),
        // EINVAL: a flag this kernel does not know (DEFER_TASKRUN is 6.1+). Try the
        // older cooperative mode below.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
        Err(e) => return Err(classify_setup_error(e)),
    }
    IoUring::builder()
        .setup_coop_taskrun()
        .setup_taskrun_flag()
        .setup_submit_all()
        .setup_cqsize(cq_entries)
        .build(sq_entries)
        .map(|ring| (ring, false))
        .map_err(|e| match e.raw_os_error() {
            // EINVAL again: even COOP_TASKRUN (5.19) is unknown.
            Some(libc::EINVAL) => ProbeError::MissingFeature {
                name: "IORING_SETUP_COOP_TASKRUN",
                kernel: kernel_release(),
                error: Some(e),
            },
            _ => classify_setup_error(e),
        })
}

fn classify_setup_error(error: io::Error) -> ProbeError {
    match error.raw_os_error() {
        // EPERM: the sysctl, or a seccomp filter returning EPERM (Docker's default).
        // ENOSYS: no such system call (seccomp with ENOSYS, or CONFIG_IO_URING=n).
        Some(libc::EPERM) | Some(libc::ENOSYS) => match io_uring_disabled_sysctl() {
            Some(value @ 1..=2) => ProbeError::DisabledBySysctl { value, error },
            _ => ProbeError::Denied { error },
        },
        // Anything else (ENOMEM, EMFILE, ...) is a resource problem, not a policy one.
        _ => ProbeError::Setup { error },
    }
}

fn io_uring_disabled_sysctl() -> Option<u8> {
    std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .ok()?
        .trim()
        .parse()
        .ok()
}

pub(crate) fn kernel_release() -> String {
    // SAFETY: utsname is plain old data; uname fills it and we read a NUL-terminated field.
    unsafe {
        let mut u: libc::utsname = std::mem::zeroed();
        if libc::uname(&mut u) != 0 {
            return "unknown".to_string();
        }
        std::ffi::CStr::from_ptr(u.release.as_ptr())
            .to_string_lossy()
            .into_owned()
    }
}

/// "6.18.0-foo" -> (6, 18).
fn parse_release(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kernel_releases() {
        assert_eq!(parse_release("6.18.0-1-generic"), Some((6, 18)));
        assert_eq!(parse_release("5.15.0"), Some((5, 15)));
        assert_eq!(parse_release("garbage"), None);
    }

    #[test]
    fn probe_passes_on_this_machine() {
        let features = probe().unwrap_or_else(|e| panic!("{e}"));
        assert!(!features.kernel.is_empty());
    }

    #[test]
    fn errors_name_the_cause_and_fix() {
        let e = ProbeError::DisabledBySysctl {
            value: 2,
            error: io::Error::from_raw_os_error(libc::EPERM),
        };
        let s = e.to_string();
        assert!(s.contains("io_uring_disabled") && s.contains("Fix"), "{s}");
        let s = ProbeError::Denied {
            error: io::Error::from_raw_os_error(libc::ENOSYS),
        }
        .to_string();
        assert!(s.contains("seccomp") && s.contains("Fix"), "{s}");
        assert!(matches!(
            classify_setup_error(io::Error::from_raw_os_error(libc::ENOMEM)),
            ProbeError::Setup { .. }
        ));
    }
}
