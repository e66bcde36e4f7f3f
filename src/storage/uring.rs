//! The log's io_uring write path: one ring owned by the logger thread, writes (and, in
//! fdatasync mode, a linked fdatasync per write) several in flight, and an eventfd read
//! kept armed so an append wakes the thread while it waits for completions.
//!
//! The project's `io` module is built for connections; the log needs positional file
//! writes only, so this small, separate use of the io-uring crate keeps the ring out of
//! the sequencer and out of the shard loops.

use crate::storage::aligned::AlignedBuf;
use crate::storage::disk::DiskFile;
use crate::storage::log::{WriteIo, WriteReq};
use io_uring::{opcode, squeue, types, IoUring};
use std::collections::HashMap;
use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;

const KIND_WRITE: u64 = 0;
const KIND_SYNC: u64 = 1;
const KIND_WAKE: u64 = 2;

/// An eventfd that wakes the logger thread.
pub(crate) struct EventFd(RawFd);

impl EventFd {
    pub(crate) fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writing 8 bytes from a valid u64 to our own open eventfd.
        let rc = unsafe { libc::write(self.0, (&one as *const u64).cast(), 8) };
        // EAGAIN means the counter is saturated: the thread is woken anyway. Nothing
        // else can fail on an open eventfd, so any result is acceptable here.
        let _ = rc;
    }
}

impl Drop for EventFd {
    fn drop(&mut self) {
        // SAFETY: the fd is ours and closed once.
        unsafe { libc::close(self.0) };
    }
}

struct Op {
    buf: AlignedBuf,
    /// Keeps the descriptor open until the kernel is done with it.
    _file: Arc<dyn DiskFile>,
    datasync: bool,
    write: Option<io::Result<()>>,
    sync: Option<io::Result<()>>,
}

/// The ring and the operations in flight, keyed by write id.
pub(crate) struct UringIo {
    ring: IoUring,
    efd: Arc<EventFd>,
    wake_buf: Box<[u8; 8]>,
    wake_armed: bool,
    ops: HashMap<u64, Op>,
}

impl UringIo {
    /// A ring with room for `max_inflight` writes, their datasyncs and the wake read.
    pub(crate) fn new(max_inflight: usize) -> io::Result<UringIo> {
        let entries = (2 * max_inflight + 2).next_power_of_two() as u32;
        let ring = IoUring::new(entries).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "cannot create the log's io_uring ring ({e}); io_uring may be disabled \
                     (sysctl kernel.io_uring_disabled) or blocked by seccomp"
                ),
            )
        })?;
        // SAFETY: eventfd has no memory arguments.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(UringIo {
            ring,
            efd: Arc::new(EventFd(fd)),
            wake_buf: Box::new([0; 8]),
            wake_armed: false,
            ops: HashMap::new(),
        })
    }

    pub(crate) fn wake_fd(&self) -> Arc<EventFd> {
        self.efd.clone()
    }

    fn push(&mut self, e: squeue::Entry) {
        // SAFETY: every buffer an entry points to (an Op's AlignedBuf, the boxed wake
        // buffer) stays alive and unmoved in `self` until its completion is reaped.
        let pushed = unsafe { self.ring.submission().push(&e) };
        assert!(
            pushed.is_ok(),
            "log ring submission queue full: sized for max_inflight"
        );
    }

    fn enter(&mut self, want: usize) {
        // Bounded: EINTR/EBUSY retry at most this often before the pass gives up.
        for _ in 0..64 {
            let r = if want > 0 {
                self.ring.submit_and_wait(want)
            } else {
                self.ring.submit()
            };
            match r {
                Ok(_) => return,
                // A signal interrupted the wait: nothing was lost, wait again.
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                // The completion queue is full: reaping makes room; the caller reaps next.
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => return,
                // Anything else is a broken ring, which no write can survive.
                Err(e) => panic!("io_uring_enter on the log ring failed: {e}"),
            }
        }
    }
}

/// Turns a negative CQE result into an error that says what failed.
fn cqe_error(res: i32, what: &str) -> io::Error {
    let errno = -res;
    let hint = match errno {
        // The file system is full (only new allocations fail: segments are preallocated,
        // so this comes from a spare or an extended file). Recovers when space returns.
        libc::ENOSPC => "no space left on the log device",
        // The device failed the write or the flush: the data is not durable.
        libc::EIO => "I/O error on the log device",
        // O_DIRECT alignment refused: a bug in our alignment or an unusual device.
        libc::EINVAL => "invalid argument (direct I/O alignment?)",
        // A linked datasync whose write failed is cancelled; the write's error counts.
        libc::ECANCELED => "cancelled after the linked write failed",
        // Anything else is reported as the kernel named it.
        _ => "log write failed",
    };
    let e = io::Error::from_raw_os_error(errno);
    io::Error::new(e.kind(), format!("{what}: {hint}: {e}"))
}

impl WriteIo for UringIo {
    fn submit(&mut self, req: WriteReq) {
        let fd = req
            .fd_file
            .raw_fd()
            .expect("io_uring log needs a real file");
        let len = req.buf.len() as u32;
        let mut w = opcode::Write::new(types::Fd(fd), req.buf.as_ptr(), len)
            .offset(req.offset)
            .build()
            .user_data(req.id << 2 | KIND_WRITE);
        if req.datasync {
            w = w.flags(squeue::Flags::IO_LINK);
        }
        self.ops.insert(
            req.id,
            Op {
                buf: req.buf,
                _file: req.fd_file,
                datasync: req.datasync,
                write: None,
                sync: None,
            },
        );
        self.push(w);
        if req.datasync {
            let s = opcode::Fsync::new(types::Fd(fd))
                .flags(types::FsyncFlags::DATASYNC)
                .build()
                .user_data(req.id << 2 | KIND_SYNC);
            self.push(s);
        }
        // Start the write now rather than at the next wait: that is what keeps several
        // in flight.
        self.enter(0);
    }

    fn reap(&mut self, out: &mut Vec<(u64, io::Result<()>, AlignedBuf)>, block: bool) {
        if !self.wake_armed {
            let r = opcode::Read::new(types::Fd(self.efd.0), self.wake_buf.as_mut_ptr(), 8)
                .build()
                .user_data(KIND_WAKE);
            self.push(r);
            self.wake_armed = true;
        }
        self.enter(if block { 1 } else { 0 });
        let mut finished = Vec::new();
        for cqe in self.ring.completion() {
            let ud = cqe.user_data();
            let (id, kind) = (ud >> 2, ud & 3);
            let res = cqe.result();
            if kind == KIND_WAKE {
                // Any result (8 bytes, or EAGAIN on the non-blocking fd) means look at
                // the queue again; the read is re-armed next time.
                self.wake_armed = false;
                continue;
            }
            let Some(op) = self.ops.get_mut(&id) else {
                panic!("completion for unknown log write {id}");
            };
            if kind == KIND_WRITE {
                op.write = Some(if res < 0 {
                    Err(cqe_error(res, "log write"))
                } else if res as usize != op.buf.len() {
                    // A short O_DIRECT write happens when the device fills mid-write;
                    // the tail never reached the disk, so the batch is not durable.
                    Err(io::Error::other(format!(
                        "short log write: {res} of {} bytes",
                        op.buf.len()
                    )))
                } else {
                    Ok(())
                });
            } else {
                op.sync = Some(if res < 0 {
                    Err(cqe_error(res, "log fdatasync"))
                } else {
                    Ok(())
                });
            }
            if op.write.is_some() && (!op.datasync || op.sync.is_some()) {
                finished.push(id);
            }
        }
        for id in finished {
            let op = self.ops.remove(&id).expect("op");
            let result = match (op.write.expect("write"), op.sync) {
                (Err(e), _) => Err(e),
                (Ok(()), Some(Err(e))) => Err(e),
                (Ok(()), _) => Ok(()),
            };
            out.push((id, result, op.buf));
        }
    }

    fn wakeable(&self) -> bool {
        true
    }
}
