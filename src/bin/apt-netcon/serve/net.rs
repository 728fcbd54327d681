//! Addresses (`HOST:PORT`, `tcp:…`, `unix:/PATH`), the listener and its
//! accepted connections, and the forward connection.

use super::CONNECT_TIMEOUT;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, ToSocketAddrs};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Addr {
    /// `host:port` as given (resolved when used).
    Tcp(String),
    Unix(PathBuf),
}

impl Addr {
    pub(super) fn parse(s: &str) -> Result<Addr, String> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("unix: needs a path (unix:/PATH)".into());
            }
            return Ok(Addr::Unix(PathBuf::from(path)));
        }
        let hp = s.strip_prefix("tcp:").unwrap_or(s);
        let (host, port) = hp.rsplit_once(':').ok_or("expected HOST:PORT, tcp:HOST:PORT or unix:/PATH")?;
        if host.is_empty() {
            return Err("the host is empty".into());
        }
        let inner = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
        if inner.is_none() && host.contains(':') {
            return Err("write an IPv6 address in brackets: [ADDRESS]:PORT".into());
        }
        if inner.is_some_and(|h| h.parse::<std::net::Ipv6Addr>().is_err()) {
            return Err(format!("'{host}' is not an IPv6 address"));
        }
        port.parse::<u16>().map_err(|_| format!("'{port}' is not a port number (0-65535)"))?;
        Ok(Addr::Tcp(hp.to_string()))
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Addr::Tcp(hp) => write!(f, "tcp:{hp}"),
            Addr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

pub(super) enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    pub(super) fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_nonblocking(on),
            Stream::Unix(s) => s.set_nonblocking(on),
        }
    }
    pub(super) fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_read_timeout(t),
            Stream::Unix(s) => s.set_read_timeout(t),
        }
    }
    pub(super) fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.shutdown(how),
            Stream::Unix(s) => s.shutdown(how),
        }
    }
    pub(super) fn peer(&self) -> String {
        match self {
            Stream::Tcp(s) => s.peer_addr().map(|a| a.to_string()).unwrap_or_else(|_| "?".into()),
            Stream::Unix(_) => "unix".into(),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

pub(super) enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

/// Why the listener could not be set up: a bad address (exit 2) or an I/O
/// error (exit 1).
pub(super) enum ListenError {
    BadAddress(String),
    Io(String),
}

impl Listener {
    pub(super) fn bind(addr: &Addr) -> Result<Listener, ListenError> {
        let l = match addr {
            Addr::Tcp(hp) => {
                let addrs: Vec<_> = hp
                    .to_socket_addrs()
                    .map_err(|e| ListenError::BadAddress(format!("--listen {addr}: cannot resolve: {e}")))?
                    .collect();
                if addrs.is_empty() {
                    return Err(ListenError::BadAddress(format!("--listen {addr}: resolves to no address")));
                }
                Listener::Tcp(
                    TcpListener::bind(&addrs[..]).map_err(|e| ListenError::Io(format!("--listen {addr}: {e}")))?,
                )
            }
            Addr::Unix(path) => {
                remove_stale_socket(path).map_err(|e| ListenError::Io(format!("--listen {addr}: {e}")))?;
                let l = UnixListener::bind(path).map_err(|e| ListenError::Io(format!("--listen {addr}: {e}")))?;
                Listener::Unix(l, path.clone())
            }
        };
        let r = match &l {
            Listener::Tcp(t) => t.set_nonblocking(true),
            Listener::Unix(u, _) => u.set_nonblocking(true),
        };
        r.map_err(|e| ListenError::Io(format!("--listen {addr}: {e}")))?;
        Ok(l)
    }

    /// A connection if one is waiting (the listener is non-blocking).
    pub(super) fn accept(&self) -> io::Result<Option<Stream>> {
        let r = match self {
            Listener::Tcp(t) => t.accept().map(|(s, _)| Stream::Tcp(s)),
            Listener::Unix(u, _) => u.accept().map(|(s, _)| Stream::Unix(s)),
        };
        match r {
            Ok(s) => {
                s.set_nonblocking(false)?;
                Ok(Some(s))
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix(_, path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A socket file left by a process that is gone is removed; one that still
/// answers is an error (another instance is listening).
fn remove_stale_socket(path: &PathBuf) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            if UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(io::ErrorKind::AddrInUse, "another process is listening on this socket"));
            }
            std::fs::remove_file(path)
        }
        Ok(_) => Err(io::Error::new(io::ErrorKind::AlreadyExists, "exists and is not a socket")),
        Err(_) => Ok(()),
    }
}

pub(super) fn connect(addr: &Addr) -> io::Result<Stream> {
    match addr {
        Addr::Tcp(hp) => {
            let mut last = io::Error::new(io::ErrorKind::NotFound, "resolves to no address");
            for a in hp.to_socket_addrs()? {
                match TcpStream::connect_timeout(&a, CONNECT_TIMEOUT) {
                    Ok(s) => {
                        let _ = s.set_nodelay(true);
                        return Ok(Stream::Tcp(s));
                    }
                    Err(e) => last = e,
                }
            }
            Err(last)
        }
        Addr::Unix(p) => UnixStream::connect(p).map(Stream::Unix),
    }
}
