//! The client connection: plain or TLS after STARTTLS, read line by line with a bound on the line length and
//! a deadline on every read and write.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// Plain TCP or TLS.
pub enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Conn {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(t) => Pin::new(t).poll_read(cx, buf),
            Conn::Tls(t) => Pin::new(t.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(t) => Pin::new(t).poll_write(cx, data),
            Conn::Tls(t) => Pin::new(t.as_mut()).poll_write(cx, data),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(t) => Pin::new(t).poll_flush(cx),
            Conn::Tls(t) => Pin::new(t.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(t) => Pin::new(t).poll_shutdown(cx),
            Conn::Tls(t) => Pin::new(t.as_mut()).poll_shutdown(cx),
        }
    }
}

/// What reading one line gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A line including its LF (or the last bytes before EOF).
    Full,
    /// Longer than the limit: the rest up to the LF was read and dropped.
    TooLong,
    /// The client closed the connection.
    Eof,
}

/// The client side of a session.
pub struct Client {
    pub reader: BufReader<Conn>,
    pub timeout: Duration,
}

impl Client {
    pub fn new(tcp: TcpStream, timeout: Duration) -> Self {
        Self { reader: BufReader::with_capacity(16 * 1024, Conn::Plain(tcp)), timeout }
    }

    /// Reads one line into `buf` (cleared first), at most `max` bytes kept; each read waits at most the timeout.
    pub async fn read_line(&mut self, buf: &mut Vec<u8>, max: usize) -> io::Result<Line> {
        buf.clear();
        let mut too_long = false;
        loop {
            let chunk = tokio::time::timeout(self.timeout, self.reader.fill_buf())
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "client idle"))??;
            if chunk.is_empty() {
                return Ok(if buf.is_empty() && !too_long { Line::Eof } else { Line::Full });
            }
            let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (chunk.len(), false),
            };
            if !too_long {
                let room = max.saturating_sub(buf.len());
                buf.extend_from_slice(&chunk[..take.min(room)]);
                too_long = take > room;
            }
            self.reader.consume(take);
            if done {
                return Ok(if too_long { Line::TooLong } else { Line::Full });
            }
        }
    }

    /// Writes `bytes` and flushes, within the timeout.
    pub async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        let w = self.reader.get_mut();
        tokio::time::timeout(self.timeout, async {
            w.write_all(bytes).await?;
            w.flush().await
        })
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "client does not read"))?
    }

    /// True when the client sent more than the current command (must not be, before a TLS handshake).
    pub fn has_buffered(&self) -> bool {
        !self.reader.buffer().is_empty()
    }

    /// Runs the TLS handshake on the plain connection.
    pub async fn start_tls(self, config: Arc<rustls::ServerConfig>) -> io::Result<Client> {
        let Client { reader, timeout } = self;
        let Conn::Plain(tcp) = reader.into_inner() else {
            return Err(io::Error::other("TLS is already active"));
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let tls = tokio::time::timeout(timeout, acceptor.accept(tcp))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
        Ok(Client { reader: BufReader::with_capacity(16 * 1024, Conn::Tls(Box::new(tls))), timeout })
    }

    pub fn is_tls(&self) -> bool {
        matches!(self.reader.get_ref(), Conn::Tls(_))
    }
}
