//! The byte stream the SMTP dialogue runs on.
//!
//! [`DeadlineStream`] is what lettre's `AsyncSmtpConnection` reads and writes. It wraps the TCP stream or the
//! tokio-rustls stream on top of it and adds what the engine needs:
//!
//! - the check's deadline ([`Budget`]): a read, write or flush still pending at the deadline fails with
//!   `io::ErrorKind::TimedOut` (lettre has no timeout of its own for a transport it did not open);
//! - in-place upgrade plain → TLS through a shared [`StreamHandle`], so STARTTLS is sent through lettre while
//!   the handshake is done by the engine on the raw TCP (to learn the version and get typed rustls errors);
//! - a bound on reply lines: lettre reads a reply line with `read_line` into an unbounded `String` and checks
//!   its length only afterwards, so a server sending megabytes without CRLF would grow memory; the stream fails
//!   the read once a line exceeds [`MAX_LINE_BYTES`];
//! - a capture of the bytes read since the last write (the raw text of the last reply), used to parse the
//!   EHLO reply lettre does not hand out and to detect data pipelined after the STARTTLS reply.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;
use tokio_rustls::client::TlsStream;

use super::budget::Budget;

/// Longest reply line accepted (RFC 5321 allows 512; servers exceed it, so be generous but bounded).
pub(crate) const MAX_LINE_BYTES: usize = 8 * 1024;
/// Longest reply accepted (all its lines together): the greeting or EHLO of a real server is a few hundred bytes;
/// a longer one is refused (lettre would buffer it and parse it again after every line).
pub(crate) const MAX_REPLY_BYTES: usize = 64 * 1024;
/// How much of the last reply is kept for parsing.
const CAPTURE_BYTES: usize = MAX_REPLY_BYTES;

/// The transport under the deadline wrapper.
pub(crate) enum Transport {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Taken out for a TLS handshake (or lost after a failed one).
    Gone,
}

#[derive(Default)]
struct Stats {
    bytes_written: u64,
    first_write_at: Option<Instant>,
    /// Bytes read since the last write, up to [`CAPTURE_BYTES`].
    since_write: Vec<u8>,
    since_write_overflow: bool,
    /// Bytes since the last LF.
    since_lf: usize,
    eof: bool,
    line_too_long: bool,
    reply_too_long: bool,
}

struct Shared {
    transport: Transport,
    stats: Stats,
    /// Renewable (a relay's upstream session gives each command its own budget).
    budget: Budget,
}

/// A handle on the stream lettre owns: upgrade it to TLS, read the capture and statistics.
#[derive(Clone)]
pub(crate) struct StreamHandle(Arc<Mutex<Shared>>);

/// The stream given to lettre (see the module docs).
pub(crate) struct DeadlineStream {
    shared: Arc<Mutex<Shared>>,
    peer: SocketAddr,
    read_deadline: Option<Pin<Box<Sleep>>>,
    write_deadline: Option<Pin<Box<Sleep>>>,
}

fn lock(m: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    // never panic on a poisoned lock: the data is plain counters and the transport
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl DeadlineStream {
    pub(crate) fn new(transport: Transport, peer: SocketAddr, budget: Budget) -> (Self, StreamHandle) {
        let shared = Arc::new(Mutex::new(Shared { transport, stats: Stats::default(), budget }));
        let stream = DeadlineStream { shared: shared.clone(), peer, read_deadline: None, write_deadline: None };
        (stream, StreamHandle(shared))
    }
}

impl StreamHandle {
    /// Takes the plain TCP stream out for a TLS handshake. Fails when the transport is not plain TCP.
    pub(crate) fn take_plain(&self) -> io::Result<TcpStream> {
        let mut s = lock(&self.0);
        match std::mem::replace(&mut s.transport, Transport::Gone) {
            Transport::Plain(tcp) => Ok(tcp),
            other => {
                s.transport = other;
                Err(io::Error::other("the connection is not a plain TCP stream"))
            }
        }
    }

    /// Installs the TLS stream after a successful handshake.
    pub(crate) fn install_tls(&self, tls: TlsStream<TcpStream>) {
        let mut s = lock(&self.0);
        s.transport = Transport::Tls(Box::new(tls));
        s.stats.since_write.clear();
        s.stats.since_write_overflow = false;
        s.stats.since_lf = 0;
    }

    /// The raw bytes read since the last write (the last reply), and whether more was read than kept.
    pub(crate) fn last_reply_bytes(&self) -> (Vec<u8>, bool) {
        let s = lock(&self.0);
        (s.stats.since_write.clone(), s.stats.since_write_overflow)
    }

    /// True once anything was written (i.e. the client spoke: the greeting phase is over).
    pub(crate) fn has_written(&self) -> bool {
        lock(&self.0).stats.bytes_written > 0
    }

    /// When the client first wrote (the end of the greeting phase).
    pub(crate) fn first_write_at(&self) -> Option<Instant> {
        lock(&self.0).stats.first_write_at
    }

    /// True when the server closed the connection.
    pub(crate) fn saw_eof(&self) -> bool {
        lock(&self.0).stats.eof
    }

    /// A second stream on the same connection (to stream a message body after DATA while lettre reads the
    /// replies); same budget.
    pub(crate) fn writer(&self, peer: SocketAddr) -> DeadlineStream {
        DeadlineStream { shared: self.0.clone(), peer, read_deadline: None, write_deadline: None }
    }

    /// Replaces the budget for the I/O that follows.
    pub(crate) fn set_budget(&self, budget: Budget) {
        lock(&self.0).budget = budget;
    }

    /// True when a reply exceeded [`MAX_REPLY_BYTES`].
    pub(crate) fn saw_reply_too_long(&self) -> bool {
        lock(&self.0).stats.reply_too_long
    }

    /// True when a reply line exceeded [`MAX_LINE_BYTES`].
    pub(crate) fn saw_line_too_long(&self) -> bool {
        lock(&self.0).stats.line_too_long
    }
}

impl fmt::Debug for DeadlineStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeadlineStream").field("peer", &self.peer).finish()
    }
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "the connection is being upgraded to TLS or was lost")
}

fn timed_out(what: &str, budget: &Budget) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, format!("{what} was still pending when {} ran out", budget.describe()))
}

/// Polls the deadline `slot` (arming it when empty). Ready(err) when it expired.
fn poll_deadline(
    slot: &mut Option<Pin<Box<Sleep>>>,
    budget: &Budget,
    cx: &mut Context<'_>,
    what: &str,
) -> Poll<io::Error> {
    let sleep = slot.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(budget.deadline())));
    match sleep.as_mut().poll(cx) {
        Poll::Ready(()) => {
            *slot = None;
            Poll::Ready(timed_out(what, budget))
        }
        Poll::Pending => Poll::Pending,
    }
}

use std::future::Future;

/// About to wait for the server: send the ACK of what it sent so far now, not after the kernel's delayed-ACK
/// timer. A server with Nagle on (Postfix) holds a small reply until the previous small write is ACKed, e.g. the
/// reply to the first command after a TLS 1.3 handshake behind its session tickets: 40 ms per check, measured.
/// Quick-ACK mode is not sticky (the kernel leaves it on its own), so it is asked for before every wait.
fn quickack(transport: &Transport) {
    let tcp = match transport {
        Transport::Plain(t) => t,
        Transport::Tls(t) => t.get_ref().0,
        Transport::Gone => return,
    };
    let _ = tcp.set_quickack(true);
}

impl AsyncRead for DeadlineStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let polled = {
            let mut s = lock(&this.shared);
            let r = match &mut s.transport {
                Transport::Plain(t) => Pin::new(t).poll_read(cx, buf),
                Transport::Tls(t) => Pin::new(t.as_mut()).poll_read(cx, buf),
                Transport::Gone => Poll::Ready(Err(gone())),
            };
            if r.is_pending() {
                quickack(&s.transport);
            }
            if let Poll::Ready(Ok(())) = &r {
                let new = &buf.filled()[before..];
                let st = &mut s.stats;
                if new.is_empty() {
                    st.eof = true;
                } else {
                    let room = CAPTURE_BYTES.saturating_sub(st.since_write.len());
                    st.since_write.extend_from_slice(&new[..new.len().min(room)]);
                    if new.len() > room {
                        st.since_write_overflow = true;
                        st.reply_too_long = true;
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("the server sent a reply longer than {MAX_REPLY_BYTES} bytes"),
                        )));
                    }
                    match new.iter().rposition(|&b| b == b'\n') {
                        Some(i) => st.since_lf = new.len() - i - 1,
                        None => st.since_lf += new.len(),
                    }
                    if st.since_lf > MAX_LINE_BYTES {
                        st.line_too_long = true;
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("the server sent a reply line longer than {MAX_LINE_BYTES} bytes"),
                        )));
                    }
                }
            }
            r
        };
        match polled {
            Poll::Ready(r) => {
                this.read_deadline = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                match poll_deadline(
                    &mut this.read_deadline,
                    &lock(&this.shared).budget.clone(),
                    cx,
                    "reading from the server",
                ) {
                    Poll::Ready(e) => Poll::Ready(Err(e)),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl DeadlineStream {
    fn poll_write_op<T>(
        &mut self,
        cx: &mut Context<'_>,
        op: impl FnOnce(&mut Transport, &mut Context<'_>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        let polled = {
            let mut s = lock(&self.shared);
            op(&mut s.transport, cx)
        };
        match polled {
            Poll::Ready(r) => {
                self.write_deadline = None;
                Poll::Ready(r)
            }
            Poll::Pending => match poll_deadline(
                &mut self.write_deadline,
                &lock(&self.shared).budget.clone(),
                cx,
                "writing to the server",
            ) {
                Poll::Ready(e) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl AsyncWrite for DeadlineStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let shared = self.shared.clone();
        let r = self.poll_write_op(cx, |t, cx| match t {
            Transport::Plain(t) => Pin::new(t).poll_write(cx, data),
            Transport::Tls(t) => Pin::new(t.as_mut()).poll_write(cx, data),
            Transport::Gone => Poll::Ready(Err(gone())),
        });
        if let Poll::Ready(Ok(n)) = &r
            && *n > 0
        {
            let mut s = lock(&shared);
            s.stats.bytes_written += *n as u64;
            s.stats.first_write_at.get_or_insert_with(Instant::now);
            s.stats.since_write.clear();
            s.stats.since_write_overflow = false;
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_write_op(cx, |t, cx| match t {
            Transport::Plain(t) => Pin::new(t).poll_flush(cx),
            Transport::Tls(t) => Pin::new(t.as_mut()).poll_flush(cx),
            Transport::Gone => Poll::Ready(Err(gone())),
        })
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_write_op(cx, |t, cx| match t {
            Transport::Plain(t) => Pin::new(t).poll_shutdown(cx),
            Transport::Tls(t) => Pin::new(t.as_mut()).poll_shutdown(cx),
            Transport::Gone => Poll::Ready(Ok(())),
        })
    }
}

impl lettre::transport::smtp::client::AsyncTokioStream for DeadlineStream {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn pair(timeout: Duration) -> (DeadlineStream, StreamHandle, TcpStream) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (c, s) = tokio::join!(TcpStream::connect(addr), l.accept());
        let (st, h) = DeadlineStream::new(Transport::Plain(c.unwrap()), addr, Budget::new(timeout));
        (st, h, s.unwrap().0)
    }

    #[tokio::test]
    async fn read_without_progress_times_out() {
        let (mut st, _h, _server) = pair(Duration::from_millis(100)).await;
        let mut buf = [0u8; 16];
        let err = st.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn endless_line_is_cut_off_and_capture_is_bounded() {
        let (mut st, h, mut server) = pair(Duration::from_secs(5)).await;
        let junk = vec![b'x'; 4096];
        let writer = tokio::spawn(async move {
            for _ in 0..64 {
                if server.write_all(&junk).await.is_err() {
                    break;
                }
            }
        });
        let mut buf = vec![0u8; 1024];
        let err = loop {
            match st.read(&mut buf).await {
                Ok(0) => panic!("unexpected eof"),
                Ok(_) => continue,
                Err(e) => break e,
            }
        };
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(h.saw_line_too_long());
        assert!(h.last_reply_bytes().0.len() <= CAPTURE_BYTES);
        drop(st);
        let _ = writer.await;
    }

    #[tokio::test]
    async fn capture_holds_bytes_since_last_write() {
        let (mut st, h, mut server) = pair(Duration::from_secs(5)).await;
        server.write_all(b"220 hi\r\n").await.unwrap();
        let mut buf = [0u8; 64];
        let n = st.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"220 hi\r\n");
        assert_eq!(h.last_reply_bytes().0, b"220 hi\r\n");
        assert!(!h.has_written());
        st.write_all(b"EHLO x\r\n").await.unwrap();
        assert!(h.has_written());
        assert!(h.last_reply_bytes().0.is_empty());
    }
}
