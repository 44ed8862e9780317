//! The socket calls a shard makes itself, on the raw descriptor.
//!
//! The shard reads into its own buffer and writes many frames in one vectored call, so it
//! calls `recv` and `sendmsg` directly once monoio reports the socket ready. Both pass
//! `MSG_DONTWAIT`, so the socket's own blocking mode does not matter, and `sendmsg` passes
//! `MSG_NOSIGNAL`, so a peer that has gone never raises SIGPIPE in an embedding process.

use std::io::{self, IoSlice};
use std::os::fd::RawFd;

/// Reads what is available into `buf`. `Ok(0)` is end of stream.
pub(crate) fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes for the duration of the call.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Writes as much of `slices` as the socket takes, in one call.
pub(crate) fn send_vectored(fd: RawFd, slices: &[IoSlice<'_>]) -> io::Result<usize> {
    // SAFETY: `IoSlice` is ABI-compatible with `iovec` on Unix; the slices outlive the call
    // and `msghdr` points only at them.
    let n = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = slices.as_ptr() as *mut libc::iovec;
        msg.msg_iovlen = slices.len() as _;
        libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Caps the bytes the kernel holds unsent for this socket (`TCP_NOTSENT_LOWAT`): once
/// that much is waiting, the socket reports itself not writable.
pub(crate) fn limit_unsent(fd: RawFd, bytes: usize) -> io::Result<()> {
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: `value` lives across the call and its size is passed with it.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NOTSENT_LOWAT,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Shuts down one or both directions. Shutting down reading wakes any task waiting for
/// the socket to become readable or writable.
pub(crate) fn shutdown(fd: RawFd, how: std::net::Shutdown) {
    let how = match how {
        std::net::Shutdown::Read => libc::SHUT_RD,
        std::net::Shutdown::Write => libc::SHUT_WR,
        std::net::Shutdown::Both => libc::SHUT_RDWR,
    };
    // SAFETY: plain syscall on a descriptor we own; errors (already closed) are harmless.
    unsafe {
        libc::shutdown(fd, how);
    }
}
