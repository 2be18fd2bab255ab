//! The socket under a `Link`: non-blocking, and before each read or write
//! that would block, a `poll(2)` for at most the time left before the
//! deadline; TCP, TLS over TCP or unix; opened within the deadline too.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use rustls::{ClientConnection, StreamOwned};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::Endpoint;

fn deadline_passed() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "deadline passed")
}

/// Waits until `fd` is ready for `events` or the deadline passes.
fn wait_ready(fd: RawFd, events: libc::c_short, deadline: Instant) -> io::Result<()> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(deadline_passed());
        }
        // Rounded up: poll counts whole milliseconds, and 0 would not wait.
        let millis = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int;
        let mut pollfd = libc::pollfd {
            fd,
            events,
            revents: 0,
        };
        // SAFETY: one valid pollfd, owned by this frame.
        match unsafe { libc::poll(&mut pollfd, 1, millis) } {
            0 => continue, // re-checks the clock: returns once the deadline passed
            n if n > 0 => return Ok(()),
            _ => {
                let err = io::Error::last_os_error();
                if err.kind() != io::ErrorKind::Interrupted {
                    return Err(err);
                }
            }
        }
    }
}

/// Whether `fd` has anything to read (data, EOF or a pending error) right now.
pub(super) fn readable_now(fd: RawFd) -> bool {
    let mut pollfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, owned by this frame; timeout 0 never blocks.
    unsafe { libc::poll(&mut pollfd, 1, 0) != 0 }
}
/// A non-blocking socket whose reads and writes wait at most until `deadline`.
pub(super) struct Timed<S> {
    socket: S,
    deadline: Instant,
}

impl<S: Read + AsRawFd> Read for Timed<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            // Waiting first saves a read that would fail with EAGAIN: a
            // reply is rarely there already when we ask for it.
            wait_ready(self.socket.as_raw_fd(), libc::POLLIN, self.deadline)?;
            match self.socket.read(buf) {
                Err(err)
                    if matches!(
                        err.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) => {}
                other => return other,
            }
        }
    }
}

impl<S: Write + AsRawFd> Write for Timed<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        loop {
            // A write usually fits in the socket buffer: try it first.
            match self.socket.write(buf) {
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    wait_ready(self.socket.as_raw_fd(), libc::POLLOUT, self.deadline)?
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                other => return other,
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.socket.flush()
    }
}

pub(super) enum Stream {
    Tcp(Timed<TcpStream>),
    Tls(Box<StreamOwned<ClientConnection, Timed<TcpStream>>>),
    Unix(Timed<UnixStream>),
}

impl Stream {
    /// Connects to `endpoint` (TLS handshake included), all before `deadline`.
    /// `addresses` are the resolved TCP addresses (unused for unix sockets).
    pub(super) fn open(
        endpoint: &Endpoint,
        addresses: &[SocketAddr],
        deadline: Instant,
    ) -> io::Result<Stream> {
        Ok(match endpoint {
            Endpoint::Tcp { .. } => Stream::Tcp(Timed {
                socket: connect_tcp(addresses, deadline)?,
                deadline,
            }),
            Endpoint::Tls {
                config,
                server_name,
                ..
            } => {
                let socket = connect_tcp(addresses, deadline)?;
                let session = ClientConnection::new(Arc::clone(config), server_name.clone())
                    .map_err(io::Error::other)?;
                let mut tls = StreamOwned::new(session, Timed { socket, deadline });
                // Handshake now, so that a certificate problem is reported
                // as such and within this deadline.
                while tls.conn.is_handshaking() {
                    tls.conn.complete_io(&mut tls.sock)?;
                }
                Stream::Tls(Box::new(tls))
            }
            Endpoint::Unix(path) => Stream::Unix(Timed {
                socket: connect_unix(path, deadline)?,
                deadline,
            }),
        })
    }

    pub(super) fn set_deadline(&mut self, deadline: Instant) {
        match self {
            Stream::Tcp(timed) => timed.deadline = deadline,
            Stream::Tls(tls) => tls.sock.deadline = deadline,
            Stream::Unix(timed) => timed.deadline = deadline,
        }
    }

    pub(super) fn deadline(&self) -> Instant {
        match self {
            Stream::Tcp(timed) => timed.deadline,
            Stream::Tls(tls) => tls.sock.deadline,
            Stream::Unix(timed) => timed.deadline,
        }
    }

    pub(super) fn raw_fd(&self) -> RawFd {
        match self {
            Stream::Tcp(timed) => timed.socket.as_raw_fd(),
            Stream::Tls(tls) => tls.sock.socket.as_raw_fd(),
            Stream::Unix(timed) => timed.socket.as_raw_fd(),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(timed) => timed.read(buf),
            Stream::Tls(tls) => tls.read(buf),
            Stream::Unix(timed) => timed.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(timed) => timed.write(buf),
            Stream::Tls(tls) => tls.write(buf),
            Stream::Unix(timed) => timed.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(timed) => timed.flush(),
            Stream::Tls(tls) => tls.flush(),
            Stream::Unix(timed) => timed.flush(),
        }
    }
}
fn connect_socket(domain: Domain, address: &SockAddr, deadline: Instant) -> io::Result<Socket> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(deadline_passed());
    }
    let protocol = (domain != Domain::UNIX).then_some(Protocol::TCP);
    let socket = Socket::new(domain, Type::STREAM, protocol)?;
    socket.connect_timeout(address, left)?;
    socket.set_nonblocking(true)?;
    if domain != Domain::UNIX {
        // Commands are written whole: waiting for more bytes only adds latency.
        socket.set_tcp_nodelay(true)?;
    }
    Ok(socket)
}

/// Connects to the first of `addresses` that accepts before the deadline.
fn connect_tcp(addresses: &[SocketAddr], deadline: Instant) -> io::Result<TcpStream> {
    let mut last_error = io::Error::new(io::ErrorKind::NotFound, "no address to connect to");
    for address in addresses {
        match connect_socket(Domain::for_address(*address), &(*address).into(), deadline) {
            Ok(socket) => return Ok(socket.into()),
            Err(err) => last_error = err,
        }
    }
    Err(last_error)
}

fn connect_unix(path: &Path, deadline: Instant) -> io::Result<UnixStream> {
    Ok(connect_socket(Domain::UNIX, &SockAddr::unix(path)?, deadline)?.into())
}
#[cfg(test)]
mod tests {
    use super::super::Failure;
    use super::*;
    use std::time::Duration;

    fn pair() -> (Timed<UnixStream>, UnixStream) {
        let (ours, theirs) = UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        let timed = Timed {
            socket: ours,
            deadline: Instant::now(),
        };
        (timed, theirs)
    }

    #[test]
    fn a_silent_peer_fails_the_read_at_the_deadline() {
        let (mut ours, _theirs) = pair();
        let started = Instant::now();
        ours.deadline = started + Duration::from_millis(50);
        let err = ours.read(&mut [0u8; 16]).unwrap_err();
        let waited = started.elapsed();
        assert_eq!(Failure::of(&err), Failure::Deadline);
        assert!(waited >= Duration::from_millis(50), "{waited:?}");
        assert!(waited < Duration::from_millis(70), "{waited:?}");
    }

    #[test]
    fn a_dripping_peer_cannot_stretch_the_deadline() {
        let (ours, mut theirs) = pair();
        let dripper = std::thread::spawn(move || {
            for _ in 0..20 {
                if theirs.write_all(b"+").is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        let mut stream = Stream::Unix(ours);
        let started = Instant::now();
        stream.set_deadline(started + Duration::from_millis(60));
        let mut parser = redis::Parser::new();
        // A simple string that never ends: each read gets a byte in time.
        let err = parser.parse_value(&mut stream).unwrap_err();
        let waited = started.elapsed();
        assert!(err.is_timeout(), "{err}");
        assert!(waited < Duration::from_millis(80), "{waited:?}");
        drop(stream);
        dripper.join().unwrap();
    }

    #[test]
    fn an_idle_socket_the_peer_closed_is_readable() {
        let (ours, theirs) = pair();
        assert!(!readable_now(ours.socket.as_raw_fd()));
        drop(theirs);
        assert!(readable_now(ours.socket.as_raw_fd()));
    }
}
