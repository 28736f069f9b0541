//! A port on 127.0.0.1 where nothing listens, for as long as the test holds it.

use std::os::fd::{FromRawFd, OwnedFd};

/// A TCP socket bound to 127.0.0.1 and never listening: a connection to its port is refused,
/// and, unlike a port bound and released, no other test can take the port meanwhile (tests
/// bind ports all the time on a busy machine).
pub struct ClosedPort {
    _socket: OwnedFd,
    pub port: u16,
}

impl ClosedPort {
    pub fn new() -> Self {
        // SAFETY: plain socket(2), bind(2) and getsockname(2) on a socket this owns, with
        // a sockaddr_in of the right size; every result is checked.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
            assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
            let socket = OwnedFd::from_raw_fd(fd);
            let mut addr: libc::sockaddr_in = std::mem::zeroed();
            addr.sin_family = libc::AF_INET as libc::sa_family_t;
            addr.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
            let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            let at = (&raw mut addr).cast::<libc::sockaddr>();
            assert_eq!(
                libc::bind(fd, at, len),
                0,
                "bind: {}",
                std::io::Error::last_os_error()
            );
            assert_eq!(libc::getsockname(fd, at, &mut len), 0);
            Self {
                _socket: socket,
                port: u16::from_be(addr.sin_port),
            }
        }
    }
}

#[test]
fn a_closed_port_refuses_connections() {
    let closed = ClosedPort::new();
    let err = std::net::TcpStream::connect(("127.0.0.1", closed.port)).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
    // Held: nobody else can take it.
    assert!(std::net::TcpListener::bind(("127.0.0.1", closed.port)).is_err());
}
