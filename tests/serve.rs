//! `apt-netcon serve`, the Vector sidecar, over real loopback and unix
//! sockets: order and annotation (the CLI's output), a detector shared by
//! connections, a forward receiver that restarts (gracefully, as Vector's
//! `socket` source does, and abruptly), back-pressure, the SIGTERM drain, and
//! address errors. Every wait is bounded; the sidecar is killed if a test
//! fails half-way.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_apt-netcon");
/// Upper bound for anything a test waits for.
const LONG: Duration = Duration::from_secs(60);

fn sample() -> Vec<u8> {
    std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/data/sample.ndjson")).unwrap()
}

fn repeat(times: usize) -> Vec<u8> {
    sample().repeat(times)
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("apt-netcon-serve-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// What `apt-netcon --quiet FILE` writes for `input`.
fn cli_output(input: &[u8], name: &str) -> Vec<u8> {
    let dir = tmpdir(&format!("cli-{name}"));
    let f = dir.join("input.ndjson");
    std::fs::write(&f, input).unwrap();
    let out = Command::new(BIN).arg("--quiet").arg(&f).output().unwrap();
    assert!(out.status.success());
    let _ = std::fs::remove_dir_all(&dir);
    out.stdout
}

fn lines(b: &[u8]) -> usize {
    b.iter().filter(|&&c| c == b'\n').count()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The sidecar process: standard error is collected by a thread; killed on
/// drop if still running.
struct Sidecar {
    child: Child,
    stderr: Arc<Mutex<String>>,
    reader: Option<thread::JoinHandle<()>>,
}

impl Sidecar {
    fn start(args: &[&str]) -> Sidecar {
        let mut child = Command::new(BIN)
            .arg("serve")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut err = child.stderr.take().unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let s2 = stderr.clone();
        let reader = thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                s2.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Sidecar { child, stderr, reader: Some(reader) }
    }

    fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on the pid of a child this test started and has
        // not reaped yet.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill");
    }

    /// The exit status and everything written to standard error; panics
    /// (killing the process) after `timeout`.
    fn wait(&mut self, timeout: Duration) -> (ExitStatus, String) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                if let Some(r) = self.reader.take() {
                    let _ = r.join();
                }
                return (st, self.stderr.lock().unwrap().clone());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("the sidecar did not exit within {timeout:?}; stderr:\n{}", self.stderr.lock().unwrap());
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `key=value` from the sidecar's counters line.
fn counter(stderr: &str, key: &str) -> u64 {
    let line = stderr.lines().rev().find(|l| l.contains(" in=")).unwrap_or_else(|| panic!("no counters in:\n{stderr}"));
    let pat = format!("{key}=");
    let v = line.split_whitespace().find_map(|w| w.strip_prefix(&pat)).unwrap_or_else(|| panic!("no {key} in {line}"));
    v.parse().unwrap()
}

fn connect_tcp(port: u16) -> TcpStream {
    let deadline = Instant::now() + LONG;
    loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => {
                s.set_write_timeout(Some(LONG)).unwrap();
                s.set_read_timeout(Some(LONG)).unwrap();
                return s;
            }
            Err(e) if Instant::now() > deadline => panic!("cannot connect to the sidecar: {e}"),
            Err(_) => thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn connect_unix(path: &Path) -> UnixStream {
    let deadline = Instant::now() + LONG;
    loop {
        match UnixStream::connect(path) {
            Ok(s) => {
                s.set_write_timeout(Some(LONG)).unwrap();
                s.set_read_timeout(Some(LONG)).unwrap();
                return s;
            }
            Err(e) if Instant::now() > deadline => panic!("cannot connect to the sidecar: {e}"),
            Err(_) => thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// What a receiver thread shares with the test: the lines received so far,
/// and "stop waiting for a connection" (set once the sidecar has exited).
#[derive(Default)]
struct Ctx {
    progress: AtomicUsize,
    stop: AtomicBool,
}

/// The next connection on `l`; `None` if the test said stop and none is
/// waiting. Panics after `LONG`.
fn accept_tcp(l: &TcpListener, ctx: &Ctx) -> Option<TcpStream> {
    l.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + LONG;
    loop {
        let stop = ctx.stop.load(Ordering::SeqCst);
        match l.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false).unwrap();
                s.set_read_timeout(Some(LONG)).unwrap();
                return Some(s);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if stop {
                    return None;
                }
                assert!(Instant::now() < deadline, "no connection from the sidecar");
                thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}

/// A small receive buffer on the receiver's sockets (inherited from the
/// listener), so that little of the stream can hide in buffers and a
/// restart happens while the sidecar is still writing.
fn small_rcvbuf(l: &TcpListener) {
    use std::os::fd::AsRawFd;
    let size: libc::c_int = 64 * 1024;
    // SAFETY: setsockopt on a socket this test owns, with a pointer to a
    // c_int and its size.
    let rc = unsafe {
        libc::setsockopt(
            l.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            &size as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
}

/// Reads until end of stream, or until `want` newlines have arrived;
/// `ctx.progress` follows the newlines received.
fn read_lines(s: &mut impl Read, want: Option<usize>, ctx: &Ctx) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    let deadline = Instant::now() + LONG;
    while want.is_none_or(|w| lines(&got) < w) {
        assert!(Instant::now() < deadline, "timed out reading ({} lines so far)", lines(&got));
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                ctx.progress.fetch_add(lines(&buf[..n]), Ordering::SeqCst);
                got.extend_from_slice(&buf[..n]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => panic!("reading the forwarded stream: {e} ({} lines so far)", lines(&got)),
        }
    }
    got
}

/// A forward receiver, in a thread.
struct Receiver {
    ctx: Arc<Ctx>,
    rx: mpsc::Receiver<Vec<u8>>,
}

impl Receiver {
    fn spawn(f: impl FnOnce(&Ctx) -> Vec<u8> + Send + 'static) -> Receiver {
        let ctx = Arc::new(Ctx::default());
        let c2 = ctx.clone();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let _ = tx.send(f(&c2));
        });
        Receiver { ctx, rx }
    }

    /// Reads one connection to its end.
    fn tcp(l: TcpListener) -> Receiver {
        Receiver::spawn(move |ctx| match accept_tcp(&l, ctx) {
            Some(mut s) => read_lines(&mut s, None, ctx),
            None => Vec::new(),
        })
    }

    fn unix(l: UnixListener) -> Receiver {
        Receiver::spawn(move |ctx| {
            let (mut s, _) = l.accept().unwrap();
            s.set_read_timeout(Some(LONG)).unwrap();
            read_lines(&mut s, None, ctx)
        })
    }

    /// Waits until `n` lines have arrived (without any signal to the sidecar).
    fn wait_for(&self, n: usize, side: &Sidecar) {
        let deadline = Instant::now() + LONG;
        while self.ctx.progress.load(Ordering::SeqCst) < n {
            assert!(
                Instant::now() < deadline,
                "{} of {n} lines forwarded; stderr:\n{}",
                self.ctx.progress.load(Ordering::SeqCst),
                side.stderr()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// What was received; call once the sidecar has exited.
    fn finish(self) -> Vec<u8> {
        self.ctx.stop.store(true, Ordering::SeqCst);
        self.rx.recv_timeout(LONG).expect("the receiver did not finish")
    }
}

fn annotated_lines(out: &[u8]) -> usize {
    out.split(|&b| b == b'\n').filter(|l| l.windows(14).any(|w| w == b"\"apt_netcon\":{")).count()
}

fn tcp_args(lport: u16, fport: u16) -> Vec<String> {
    vec!["--listen".into(), format!("127.0.0.1:{lport}"), "--forward".into(), format!("tcp:127.0.0.1:{fport}")]
}

fn start(args: &[String], extra: &[&str]) -> Sidecar {
    let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
    all.extend_from_slice(extra);
    Sidecar::start(&all)
}

/// Asserts a clean exit and returns standard error.
fn stop(side: &mut Sidecar) -> String {
    side.signal(libc::SIGTERM);
    let (st, err) = side.wait(LONG);
    assert!(st.success(), "exit status {st}; stderr:\n{err}");
    err
}

/// A sidecar over TCP with `extra` options, fed `input` on one connection
/// until `n` lines have been forwarded, then stopped (a clean exit
/// asserted). Returns what it forwarded and its standard error.
fn through_tcp(extra: &[&str], input: &[u8], n: usize) -> (Vec<u8>, String) {
    let fwd = TcpListener::bind("127.0.0.1:0").unwrap();
    let fport = fwd.local_addr().unwrap().port();
    let lport = free_port();
    let mut side = start(&tcp_args(lport, fport), extra);
    let recv = Receiver::tcp(fwd);
    let mut c = connect_tcp(lport);
    c.write_all(input).unwrap();
    // Forwarded as it streams: no signal and no close needed.
    recv.wait_for(n, &side);
    drop(c);
    let err = stop(&mut side);
    (recv.finish(), err)
}

#[test]
fn records_come_back_in_order_and_annotated_as_by_the_cli() {
    let input = repeat(20);
    let n = lines(&input);
    let expected = cli_output(&input, "order");
    let (got, err) = through_tcp(&[], &input, n);
    assert_eq!(lines(&got), n);
    assert!(got == expected, "the forwarded stream differs from `apt-netcon --quiet` on the same input");
    // The sample alone gives its two alerts, as the CLI does.
    let one = sample();
    assert_eq!(annotated_lines(&got[..lines_prefix_len(&got, lines(&one))]), 2);
    assert_eq!(&got[..lines_prefix_len(&got, lines(&one))], &cli_output(&one, "one")[..]);
    assert_eq!(counter(&err, "in"), n as u64);
    assert_eq!(counter(&err, "out"), n as u64);
    assert_eq!(counter(&err, "not_forwarded"), 0);
    assert_eq!(counter(&err, "reconnects"), 0);
    assert!(err.contains("apt-netcon serve: records="), "{err}");
}

/// Length of the first `k` lines of `b`.
fn lines_prefix_len(b: &[u8], k: usize) -> usize {
    let mut seen = 0;
    for (i, &c) in b.iter().enumerate() {
        if c == b'\n' {
            seen += 1;
            if seen == k {
                return i + 1;
            }
        }
    }
    b.len()
}

#[test]
fn one_detector_serves_every_connection() {
    // The shell exec arrives on one connection, its child's connection on
    // another: the alert is still raised (one detector behind a mutex).
    let input = sample();
    let split = input
        .split_inclusive(|&b| b == b'\n')
        .position(|l| l.windows(15).any(|w| w == b"\"hook-net-0001\""))
        .expect("the sample's first network event");
    let cut = lines_prefix_len(&input, split);
    let fwd = TcpListener::bind("127.0.0.1:0").unwrap();
    let fport = fwd.local_addr().unwrap().port();
    let lport = free_port();
    let mut side = start(&tcp_args(lport, fport), &[]);
    let recv = Receiver::tcp(fwd);
    let mut a = connect_tcp(lport);
    a.write_all(&input[..cut]).unwrap();
    recv.wait_for(split, &side);
    let mut b = connect_tcp(lport);
    b.write_all(&input[cut..]).unwrap();
    recv.wait_for(lines(&input), &side);
    drop((a, b));
    let err = stop(&mut side);
    let got = recv.finish();
    assert!(got == cli_output(&input, "split"), "the stream differs from the CLI's");
    assert_eq!(annotated_lines(&got), 2);
    assert_eq!(counter(&err, "connections"), 2);
}

#[test]
fn forward_side_restarting_like_vector_loses_and_duplicates_nothing() {
    // The forward address is down at first; then the receiver comes up,
    // takes a third of the stream, and restarts the way Vector's socket
    // source shuts down: stop listening, half-close, read until the writer
    // closes. Then it comes back on the same port.
    let input = repeat(300);
    let n = lines(&input);
    let expected = cli_output(&input, "restart");
    let fport = free_port();
    let lport = free_port();
    let mut side = start(&tcp_args(lport, fport), &["--queue-bytes", "262144"]);
    let mut c = connect_tcp(lport);
    let writer = thread::spawn(move || {
        c.write_all(&input).unwrap();
        c
    });
    thread::sleep(Duration::from_millis(400));
    let (tx, second) = mpsc::channel();
    let recv = Receiver::spawn(move |ctx| {
        let l = TcpListener::bind(("127.0.0.1", fport)).unwrap();
        small_rcvbuf(&l);
        let mut s1 = accept_tcp(&l, ctx).unwrap();
        let mut got = read_lines(&mut s1, Some(n / 3), ctx);
        drop(l);
        s1.shutdown(Shutdown::Write).unwrap();
        got.extend(read_lines(&mut s1, None, ctx));
        drop(s1);
        thread::sleep(Duration::from_millis(300));
        let l = TcpListener::bind(("127.0.0.1", fport)).unwrap();
        let got2 = match accept_tcp(&l, ctx) {
            Some(mut s2) => read_lines(&mut s2, None, ctx),
            None => Vec::new(),
        };
        tx.send(lines(&got2)).unwrap();
        got.extend(got2);
        got
    });
    recv.wait_for(n, &side);
    let c = writer.join().unwrap();
    drop(c);
    let err = stop(&mut side);
    let got = recv.finish();
    assert_eq!(lines(&got), n, "{err}");
    assert!(got == expected, "records lost, duplicated or reordered across the restart");
    assert!(counter(&err, "connect_failures") >= 1, "{err}");
    assert!(counter(&err, "peer_closes") >= 1, "{err}");
    assert!(counter(&err, "reconnects") >= 1, "{err}");
    assert_eq!(counter(&err, "resent_partial"), 0, "{err}");
    assert_eq!(counter(&err, "out"), n as u64);
    let on_second = second.recv_timeout(LONG).unwrap();
    assert!(on_second > 0 && on_second <= n - n / 3, "the restart happened mid-stream ({on_second} lines after it)");
}

#[test]
fn forward_connection_reset_loses_only_what_was_written_before_it() {
    // The receiver reads a third of the stream and drops the connection
    // without reading the rest (a reset, as when Vector crashes). As
    // documented: nothing is duplicated, order is kept, the records lost are
    // one run right after the last one the old receiver read (written to the
    // dead connection), the old receiver may end with a fragment of a record
    // that is then resent whole, and everything after arrives.
    let input = repeat(300);
    let n = lines(&input);
    let expected = cli_output(&input, "reset");
    let exp_lines: Vec<&[u8]> = expected.split_inclusive(|&b| b == b'\n').collect();
    let fwd = TcpListener::bind("127.0.0.1:0").unwrap();
    let fport = fwd.local_addr().unwrap().port();
    let lport = free_port();
    let mut side = start(&tcp_args(lport, fport), &["--queue-bytes", "262144"]);
    let mut c = connect_tcp(lport);
    let writer = thread::spawn(move || {
        c.write_all(&input).unwrap();
        c
    });
    let (tx, first) = mpsc::channel();
    small_rcvbuf(&fwd);
    let recv = Receiver::spawn(move |ctx| {
        let mut s1 = accept_tcp(&fwd, ctx).unwrap();
        let got1 = read_lines(&mut s1, Some(n / 3), ctx);
        drop(s1);
        tx.send(got1).unwrap();
        match accept_tcp(&fwd, ctx) {
            Some(mut s2) => read_lines(&mut s2, None, ctx),
            None => Vec::new(),
        }
    });
    let c = writer.join().unwrap();
    drop(c);
    let got1 = first.recv_timeout(LONG).unwrap();
    // The sidecar's drain forwards the rest and closes the second
    // connection, which ends the receiver.
    let err = stop(&mut side);
    let got2 = recv.finish();

    let complete1 = lines_prefix_len(&got1, lines(&got1));
    let a = lines(&got1);
    assert!(a >= n / 3 && a <= n);
    assert!(got1[..complete1] == exp_lines[..a].concat()[..], "first connection: not the stream's head");
    let fragment = &got1[complete1..];
    let l2 = lines(&got2);
    assert_eq!(got2.last(), Some(&b'\n'));
    let b = n - l2;
    assert!(b >= a, "duplicated records: the second connection starts at {b}, the first ended at {a}");
    assert!(got2 == exp_lines[b..].concat(), "second connection: not the stream's tail");
    // The test stopped reading in the middle of a line: that fragment is
    // the head of the next record (a fragment the sidecar left when its
    // write failed would be on the first connection too, unread here).
    assert!(exp_lines[a].starts_with(fragment));
    assert!(counter(&err, "reconnects") >= 1, "{err}");
    assert_eq!(counter(&err, "out"), n as u64);
}

#[test]
fn back_pressure_instead_of_buffering() {
    // The forward side is down: the sidecar stops reading once its queue is
    // full, so the client's writes stall; when the receiver comes up,
    // everything arrives.
    let input = repeat(600); // about 22 MB
    let n = lines(&input);
    let fport = free_port();
    let lport = free_port();
    let mut side = start(&tcp_args(lport, fport), &["--queue-bytes", "1048576"]);
    let mut c = connect_tcp(lport);
    c.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut written = 0;
    while written < input.len() {
        match c.write(&input[written..]) {
            Ok(k) => written += k,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(written < input.len() / 2, "{written} of {} bytes accepted with nowhere to send them", input.len());
    let recv = Receiver::tcp(TcpListener::bind(("127.0.0.1", fport)).unwrap());
    c.set_write_timeout(Some(LONG)).unwrap();
    c.write_all(&input[written..]).unwrap();
    recv.wait_for(n, &side);
    drop(c);
    let err = stop(&mut side);
    let got = recv.finish();
    assert_eq!(lines(&got), n);
    assert!(got == cli_output(&input, "pressure"));
    assert!(counter(&err, "connect_failures") >= 1, "{err}");
}

#[test]
fn sigterm_drains_what_clients_sent_then_exits_0() {
    // The client sends and keeps its connection open; on SIGTERM the
    // sidecar half-closes it (Vector's sink then stops and closes), reads
    // what was sent, forwards it all and exits 0 — well before the drain
    // timeout, since the client closed.
    let input = repeat(30);
    let fwd = TcpListener::bind("127.0.0.1:0").unwrap();
    let fport = fwd.local_addr().unwrap().port();
    let lport = free_port();
    let mut side = start(&tcp_args(lport, fport), &["--drain-timeout", "30"]);
    let recv = Receiver::tcp(fwd);
    let mut c = connect_tcp(lport);
    c.write_all(&input).unwrap();
    let t0 = Instant::now();
    side.signal(libc::SIGTERM);
    let mut b = [0u8; 16];
    assert_eq!(c.read(&mut b).unwrap(), 0, "the sidecar half-closes client connections when draining");
    drop(c);
    let (st, err) = side.wait(LONG);
    assert!(st.success(), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(20), "waited for the drain timeout: {:?}", t0.elapsed());
    let got = recv.finish();
    assert!(got == cli_output(&input, "drain"), "{err}");
    assert_eq!(counter(&err, "not_forwarded"), 0);
    assert!(err.contains("draining"), "{err}");
}

#[test]
fn drain_timeout_bounds_a_client_that_never_closes() {
    let input = repeat(5);
    let fwd = TcpListener::bind("127.0.0.1:0").unwrap();
    let fport = fwd.local_addr().unwrap().port();
    let lport = free_port();
    let mut side = start(&tcp_args(lport, fport), &["--drain-timeout", "1"]);
    let recv = Receiver::tcp(fwd);
    let mut c = connect_tcp(lport);
    c.write_all(&input).unwrap();
    recv.wait_for(lines(&input), &side);
    let t0 = Instant::now();
    side.signal(libc::SIGINT);
    let (st, err) = side.wait(LONG);
    assert!(st.success(), "{err}");
    assert!(t0.elapsed() >= Duration::from_millis(900), "left before the drain timeout");
    assert!(err.contains("drain timeout"), "{err}");
    assert!(recv.finish() == cli_output(&input, "timeout"));
    drop(c);
}

#[test]
fn unix_sockets_both_ways() {
    let input = repeat(10);
    let dir = tmpdir("unix");
    let inp = dir.join("in.sock");
    let outp = dir.join("out.sock");
    let recv = Receiver::unix(UnixListener::bind(&outp).unwrap());
    let mut side = Sidecar::start(&[
        "--listen",
        &format!("unix:{}", inp.display()),
        "--forward",
        &format!("unix:{}", outp.display()),
    ]);
    let mut c = connect_unix(&inp);
    c.write_all(&input).unwrap();
    recv.wait_for(lines(&input), &side);
    drop(c);
    let err = stop(&mut side);
    assert!(recv.finish() == cli_output(&input, "unix"), "{err}");
    assert!(!inp.exists(), "the listening socket file is removed at exit");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_stale_unix_socket_file_is_replaced() {
    let dir = tmpdir("stale");
    let inp = dir.join("in.sock");
    drop(UnixListener::bind(&inp).unwrap()); // leaves the file behind
    assert!(inp.exists());
    let mut side = Sidecar::start(&[
        "--listen",
        &format!("unix:{}", inp.display()),
        "--forward",
        &format!("unix:{}", dir.join("nobody.sock").display()),
    ]);
    drop(connect_unix(&inp));
    stop(&mut side);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_addresses_and_options_exit_2_naming_them() {
    let port = free_port();
    let fwd = format!("127.0.0.1:{port}");
    let cases: &[(&[&str], &str)] = &[
        (&["--listen", "nonsense", "--forward", &fwd], "'nonsense'"),
        (&["--listen", "127.0.0.1:99999", "--forward", &fwd], "'127.0.0.1:99999'"),
        (&["--listen", "tcp::9000", "--forward", &fwd], "'tcp::9000'"),
        (&["--listen", "::1:9000", "--forward", &fwd], "brackets"),
        (&["--listen", "[nothere]:9000", "--forward", &fwd], "'[nothere]:9000'"),
        (&["--listen", "127.0.0.1:0", "--forward", "unix:"], "'unix:'"),
        (&["--listen", "127.0.0.1:0", "--forward", "localhost"], "'localhost'"),
        // Usage errors are clap's: the missing option named under "not provided".
        (&["--listen", "127.0.0.1:0"], "not provided:\n  --forward <ADDR>"),
        (&["--forward", &fwd], "not provided:\n  --listen <ADDR>"),
        (&["--listen", &fwd, "--forward", &fwd], "same address"),
        (&["--listen", "127.0.0.1:0", "--forward", &fwd, "--drain-timeout", "soon"], "'soon'"),
        (&["--listen", "127.0.0.1:0", "--forward", &fwd, "--queue-bytes", "0"], "--queue-bytes"),
        (&["--listen", "127.0.0.1:0", "--forward", &fwd, "--rule", "/no/such/rule.eql"], "/no/such/rule.eql"),
        (&["--listen", "127.0.0.1:0", "--forward", &fwd, "--bogus"], "'--bogus'"),
        (&["--listen", "127.0.0.1:0", "--forward"], "'--forward <ADDR>'"),
        (&["--listen", "127.0.0.1:0", "--forward", &fwd, "--max-connections", "x"], "'--max-connections <N>'"),
    ];
    for (args, needle) in cases {
        let mut side = Sidecar::start(args);
        let (st, err) = side.wait(LONG);
        assert_eq!(st.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: expected {needle} in: {err}");
    }
    // An address in use is an I/O error: 1, naming it.
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let mut side = Sidecar::start(&["--listen", &addr, "--forward", &fwd]);
    let (st, err) = side.wait(LONG);
    assert_eq!(st.code(), Some(1), "{err}");
    assert!(err.contains(&addr), "{err}");
}

#[test]
fn a_record_cut_by_a_reset_is_resent_whole() {
    // A 20 MB record (passed through unread: over max_record_bytes) cannot
    // fit in the socket buffers: the receiver reads 1 MB and resets the
    // connection while the sidecar is in the middle of writing it. The
    // record is then sent again, whole, on the next connection; the first
    // connection ends with its head and no newline.
    let small = sample();
    let first = &small[..lines_prefix_len(&small, 1)];
    let mut big = br#"{"message":""#.to_vec();
    big.resize(20 << 20, b'x');
    big.extend_from_slice(b"\"}\n");
    let input = [first, &big[..], &small[..]].concat();
    let n = lines(&input);
    let expected = cli_output(&input, "cut");
    let fwd = TcpListener::bind("127.0.0.1:0").unwrap();
    small_rcvbuf(&fwd);
    let fport = fwd.local_addr().unwrap().port();
    let lport = free_port();
    let mut side = start(&tcp_args(lport, fport), &[]);
    let (tx, first_conn) = mpsc::channel();
    let recv = Receiver::spawn(move |ctx| {
        let mut s1 = accept_tcp(&fwd, ctx).unwrap();
        let mut got1 = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        while got1.len() < 1 << 20 {
            let k = s1.read(&mut buf).unwrap();
            assert!(k > 0, "early end of stream");
            got1.extend_from_slice(&buf[..k]);
        }
        drop(s1);
        tx.send(got1).unwrap();
        read_lines(&mut accept_tcp(&fwd, ctx).unwrap(), None, ctx)
    });
    let mut c = connect_tcp(lport);
    c.write_all(&input).unwrap();
    drop(c);
    let got1 = first_conn.recv_timeout(LONG).unwrap();
    let err = stop(&mut side);
    let got2 = recv.finish();
    let exp_lines: Vec<&[u8]> = expected.split_inclusive(|&b| b == b'\n').collect();
    assert_eq!(lines(&got1), 1);
    assert!(got1.starts_with(exp_lines[0]));
    assert!(exp_lines[1].starts_with(&got1[exp_lines[0].len()..]), "the first connection ends with the record's head");
    assert!(got2 == exp_lines[1..].concat(), "the cut record and all after it, once, on the second connection");
    assert_eq!(lines(&got2), n - 1);
    assert_eq!(counter(&err, "resent_partial"), 1, "{err}");
    assert_eq!(counter(&err, "forward_errors"), 1, "{err}");
}

#[test]
fn a_second_signal_gives_up_on_a_forward_side_that_is_down() {
    // The drain waits for the forward side (nothing is dropped on the
    // first signal); a second signal exits 1 at once, counting the records
    // read but not forwarded.
    let input = repeat(3);
    let n = lines(&input) as u64;
    let fport = free_port();
    let lport = free_port();
    let mut side = start(&tcp_args(lport, fport), &["--drain-timeout", "5"]);
    let mut c = connect_tcp(lport);
    c.write_all(&input).unwrap();
    drop(c);
    side.signal(libc::SIGTERM);
    let deadline = Instant::now() + LONG;
    while !side.stderr().contains("draining") {
        assert!(Instant::now() < deadline, "{}", side.stderr());
        thread::sleep(Duration::from_millis(20));
    }
    thread::sleep(Duration::from_millis(1000));
    assert!(side.child.try_wait().unwrap().is_none(), "exited with the forward side down:\n{}", side.stderr());
    side.signal(libc::SIGTERM);
    let (st, err) = side.wait(LONG);
    assert_eq!(st.code(), Some(1), "{err}");
    assert_eq!(counter(&err, "in"), n, "{err}");
    assert_eq!(counter(&err, "out"), 0, "{err}");
    assert_eq!(counter(&err, "not_forwarded"), n, "{err}");
    assert!(err.contains(&format!("second signal: exiting with {n} records read but not forwarded")), "{err}");
}

/// With `max_lateness`, the sample reversed (every event out of order) is
/// forwarded unchanged, and the sample's two alerts follow as standalone
/// records — at the latest when the sidecar drains on SIGTERM.
#[test]
fn with_max_lateness_held_alerts_go_out_before_the_drain_ends() {
    let one = sample();
    let mut recs: Vec<&[u8]> = one.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
    recs.reverse();
    let mut input = recs.join(&b'\n');
    input.push(b'\n');
    let dir = tmpdir("lateness");
    let cfg = dir.join("late.json");
    std::fs::write(&cfg, r#"{"max_lateness":"1d"}"#).unwrap();
    let (got, err) = through_tcp(&["--config", cfg.to_str().unwrap()], &input, recs.len());
    assert_eq!(lines(&got), recs.len() + 2, "{err}");
    assert_eq!(&got[..input.len()], &input[..], "every record unchanged, in order");
    assert_eq!(annotated_lines(&got[input.len()..]), 2, "the two alerts follow");
}

#[test]
fn warnings_and_periodic_counters_go_to_stderr() {
    let dir = tmpdir("warn");
    let config = dir.join("config.json");
    std::fs::write(&config, r#"{"stats_interval": "200ms"}"#).unwrap();
    // What Vector sends when nothing parsed the log lines, then a shell
    // exec'd by apt whose @timestamp a parser took away.
    let mut input = Vec::new();
    for i in 0..5 {
        input.extend_from_slice(format!("{{\"message\":\"line {i}: apt-get update\"}}\n").as_bytes());
    }
    let no_time = r#"{"event":{"category":["process"],"type":["start"],"action":"exec"},"host":{"id":"h1","os":{"type":"linux"}},"process":{"name":"sh","args":["sh","-c","x"],"entity_id":"P1","parent":{"name":"apt","entity_id":"A1"}}}"#;
    input.extend_from_slice(format!("{no_time}\n{no_time}\n").as_bytes());
    let n = lines(&input);
    let fwd = TcpListener::bind("127.0.0.1:0").unwrap();
    let fport = fwd.local_addr().unwrap().port();
    let lport = free_port();
    let mut side = start(&tcp_args(lport, fport), &["--config", config.to_str().unwrap()]);
    let recv = Receiver::tcp(fwd);
    let mut c = connect_tcp(lport);
    c.write_all(&input).unwrap();
    recv.wait_for(n, &side);
    drop(c);
    // At least two intervals: at least two counters lines, whatever the load.
    thread::sleep(Duration::from_millis(700));
    let err = stop(&mut side);
    assert_eq!(recv.finish(), input, "records forwarded unchanged");
    assert_eq!(err.matches("look unparsed").count(), 1, "{err}");
    assert!(err.contains("apt-netcon serve: warning: ") && err.contains("a single member `message` holding a string"), "{err}");
    assert!(err.contains("parse_json!(.message)"), "{err}");
    assert_eq!(err.matches("no usable @timestamp").count(), 1, "{err}");
    assert!(err.contains("`Time_Keep On`"), "{err}");
    let periodic: Vec<&str> = err.lines().filter(|l| l.starts_with("apt-netcon serve: counters: in=")).collect();
    assert!(periodic.len() >= 2, "{err}");
    assert!(periodic.iter().all(|l| l.contains("; detector: records=") && l.contains(" unparsed=")), "{err}");
    assert!(err.contains("bad_timestamp=2") && err.contains("unparsed=5"), "{err}");
    assert_eq!(counter(&err, "in"), n as u64);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn no_stats_interval_no_periodic_counters() {
    let fwd = TcpListener::bind("127.0.0.1:0").unwrap();
    let fport = fwd.local_addr().unwrap().port();
    let lport = free_port();
    let mut side = start(&tcp_args(lport, fport), &[]);
    let recv = Receiver::tcp(fwd);
    let input = sample();
    let mut c = connect_tcp(lport);
    c.write_all(&input).unwrap();
    recv.wait_for(lines(&input), &side);
    drop(c);
    thread::sleep(Duration::from_millis(300));
    let err = stop(&mut side);
    recv.finish();
    assert!(!err.contains("counters:"), "{err}");
    assert!(!err.contains("warning:"), "the sample is parsed ECS: {err}");
}

// ---------------------------------------------------------------------------
// Rule packs

/// A pack of small rules: a_port, b_addr and the three-stage c_seq are all
/// completed by one network record; e_broken does not load.
fn pack_dir(name: &str, broken: bool) -> PathBuf {
    let dir = tmpdir(name);
    let rules = dir.join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(rules.join("a_port.eql"), "network where destination.port == 4444\n").unwrap();
    std::fs::write(rules.join("b_addr.eql"), "network where destination.address == \"203.0.113.9\"\n").unwrap();
    std::fs::write(
        rules.join("c_seq.eql"),
        "sequence by host.id\n  [process where process.name == \"stage1\"]\n  [file where file.name == \"stage2\"]\n  [network where destination.port == 4444]\n",
    )
    .unwrap();
    if broken {
        std::fs::write(rules.join("e_broken.eql"), "network where destination.port ==\n").unwrap();
        std::fs::write(rules.join("f_broken.eql"), "this is not eql\n").unwrap();
    }
    dir
}

fn pack_input() -> Vec<u8> {
    let recs = [
        r#"{"@timestamp":"2026-03-14T09:30:00.000Z","event":{"category":["process"],"id":"e1"},"host":{"id":"h1"},"process":{"name":"stage1","entity_id":"p1"}}"#,
        r#"{"@timestamp":"2026-03-14T09:30:01.000Z","event":{"category":["file"],"id":"e2"},"host":{"id":"h1"},"file":{"name":"stage2"}}"#,
        r#"{"@timestamp":"2026-03-14T09:30:02.000Z","event":{"category":["network"],"id":"e3"},"host":{"id":"h1"},"destination":{"port":4444,"address":"203.0.113.9","ip":"203.0.113.9"}}"#,
        r#"{"@timestamp":"2026-03-14T09:30:03.000Z","event":{"category":["process"],"id":"e4"},"host":{"id":"h1"},"process":{"name":"ls"}}"#,
    ];
    recs.iter().flat_map(|r| format!("{r}\n").into_bytes()).collect()
}

/// A pack config with skip_broken_rules: the skipped rules are reported at
/// start and with the counters; every record is forwarded unchanged, and
/// the one completing three rules is followed at once by their three alerts,
/// in rule order; the exit report names each rule that alerted.
#[test]
fn a_pack_forwards_each_record_then_one_alert_per_rule() {
    let dir = pack_dir("pack", true);
    let config = dir.join("pack.json");
    let rules = dir.join("rules");
    std::fs::write(&config, format!(r#"{{"rules_dir": {:?}, "skip_broken_rules": true}}"#, rules.to_str().unwrap()))
        .unwrap();
    let input = pack_input();
    let (got, err) = through_tcp(&["--config", config.to_str().unwrap()], &input, 7);
    let got_lines: Vec<&[u8]> = got.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
    let in_lines: Vec<&[u8]> = input.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
    assert_eq!(got_lines.len(), 7, "{}", String::from_utf8_lossy(&got));
    assert_eq!(&got_lines[..3], &in_lines[..3], "records unchanged, in order");
    let names: Vec<String> = got_lines[3..6]
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_slice(l).unwrap();
            assert_eq!(v["event"]["kind"], "signal");
            assert_eq!(v["event"]["id"], "e3", "the completing record's document");
            v["rule"]["name"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(names, ["a_port", "b_addr", "c_seq"]);
    assert_eq!(got_lines[6], in_lines[3], "the next record after the alerts");
    // Skipped rules: at start (before the first connection) and at exit.
    let start_part = &err[..err.find("listening on").expect("the start line")];
    assert!(start_part.contains("a pack of 3 rules (2 skipped: do not load)"), "{err}");
    for b in ["e_broken.eql", "f_broken.eql"] {
        assert!(start_part.contains("apt-netcon serve: skipped rule ") && start_part.contains(b), "{err}");
        assert_eq!(err.matches(b).count(), 2, "at start and at exit: {err}");
    }
    assert_eq!(counter(&err, "in"), 4);
    assert_eq!(counter(&err, "out"), 7);
    assert_eq!(counter(&err, "alerts"), 3);
    assert!(err.contains("standalone_alerts=3"), "{err}");
    for r in ["a_port", "b_addr", "c_seq"] {
        assert!(err.contains(&format!("apt-netcon serve: rule \"{r}\" ({r}): alerts=1 ")), "{err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Without skip_broken_rules, a pack with broken rules does not start: exit
/// status 2 and every broken rule named with its reason (config file, and
/// the `--rules DIR` option).
#[test]
fn a_pack_with_broken_rules_does_not_start() {
    let dir = pack_dir("pack-broken", true);
    let rules = dir.join("rules");
    let config = dir.join("pack.json");
    std::fs::write(&config, format!(r#"{{"rules_dir": {:?}}}"#, rules.to_str().unwrap())).unwrap();
    let lport = free_port();
    let fport = free_port();
    for extra in [vec!["--config", config.to_str().unwrap()], vec!["--rules", rules.to_str().unwrap()]] {
        let mut side = start(&tcp_args(lport, fport), &extra);
        let (st, err) = side.wait(LONG);
        assert_eq!(st.code(), Some(2), "{err}");
        assert!(err.contains("2 of 5 rules do not load"), "{err}");
        assert!(err.contains("e_broken.eql: ") && err.contains("f_broken.eql: "), "{err}");
        assert!(!err.contains("listening on"), "{err}");
    }
    // With --skip-broken-rules the same directory starts.
    let (got, err) = through_tcp(&["--rules", rules.to_str().unwrap(), "--skip-broken-rules"], &pack_input(), 7);
    assert_eq!(lines(&got), 7);
    assert!(err.contains("a pack of 3 rules (2 skipped: do not load)"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `serve --help`: every option, the address forms, the exit statuses; on
/// standard output, exit 0, nothing started.
#[test]
fn help_lists_every_option() {
    let out = Command::new(BIN).args(["serve", "--help"]).output().unwrap();
    assert!(out.status.success());
    assert!(out.stderr.is_empty());
    let help = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "Usage: apt-netcon serve",
        "--listen <ADDR>",
        "--forward <ADDR>",
        "--config <FILE>",
        "--rule <NAME|FILE>",
        "--rules <DIR>",
        "--skip-broken-rules",
        "--drain-timeout <SECS>",
        "[default: 10]",
        "--queue-bytes <N>",
        "[default: 4194304]",
        "--max-line-bytes <N>",
        "[default: 67108864]",
        "--max-connections <N>",
        "[default: 64]",
        "-h, --help",
        "unix:/PATH",
        "docs/configuration.md",
        "Examples:",
        "Exit status: 0 done",
    ] {
        assert!(help.contains(needle), "{needle} missing from:\n{help}");
    }
}
