//! [`TlsWire`]: a TLS session over an accepted socket on rustls' unbuffered API, where this
//! module owns the buffers, for the connection layer (`conn::Wire`) and for hyper alike.
//!
//! Why not tokio-rustls: its buffered `ServerConnection` keeps a 4 KiB record buffer
//! (zero-filled, so resident) for the connection's life, read or not, a third of what an idle
//! TLS subscriber cost (docs/tls-memory.md). Here the buffers exist only while they hold
//! something: received bytes are read through a stack buffer and kept only as long as they are
//! an unfinished record; decrypted bytes until the reader takes them; encrypted bytes until the
//! socket took them. A silent client with nothing queued for it costs the session's crypto
//! state and no buffer at all.
//!
//! The session answers what the buffered API answers on its own: handshake records, session
//! tickets after the handshake, the client's key updates (answered at once) and close_notify
//! (the reader sees the end of the stream); [`AsyncWrite::poll_shutdown`] sends our
//! close_notify before closing the socket.

use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use tokio_rustls::rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, InsufficientSizeError, WriteTraffic,
};

use crate::conn;

/// Bytes read from the socket at a time, through the stack.
const READ_CHUNK: usize = 4096;

/// Most received bytes kept unprocessed: a handshake message may span records up to rustls'
/// own limit (64 KiB), plus one record's header and body.
const MAX_INCOMING: usize = 0x1_0000 + 5 + 0x4800;

/// Most plaintext encrypted by one write (four full records): bounds the write buffer.
const MAX_WRITE: usize = 4 * 16_384;

/// Encrypted bytes waiting for the socket past which a write waits for them to leave first.
const WRITE_HIGH_WATER: usize = 16_384;

/// Room for a record's header, nonce, tag and content type (TLS 1.2 AES-GCM is the largest at
/// 29 bytes), rounded up.
const RECORD_OVERHEAD: usize = 40;

/// A TLS server session over a socket, after [`TlsWire::accept`].
pub(crate) struct TlsWire {
    tcp: TcpStream,
    conn: UnbufferedServerConnection,
    /// Received TLS bytes not processed yet (an unfinished record); no allocation when empty.
    incoming: Vec<u8>,
    /// Encrypted bytes for the socket, from `sent` on; freed once all are written.
    outgoing: Vec<u8>,
    sent: usize,
    /// Decrypted application data, from `taken` on; freed once all are read.
    plaintext: Vec<u8>,
    taken: usize,
    /// The client closed (close_notify, or EOF): reads return the end of the stream.
    read_closed: bool,
    /// Our close_notify is queued: no more writes.
    write_closed: bool,
}

/// Where the session stands after processing what was received.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Stand {
    /// Application data may be sent.
    Open,
    /// The handshake waits for the client.
    Handshaking,
    /// Both sides sent close_notify.
    Closed,
}

/// What to do once the session allows application data.
type WriteAction<'a> =
    &'a mut dyn FnMut(&mut WriteTraffic<'_, ServerConnectionData>, &mut Vec<u8>) -> io::Result<()>;

impl TlsWire {
    /// Runs the handshake over `tcp`. The caller bounds how long it may take.
    pub(crate) async fn accept(tcp: TcpStream, config: Arc<ServerConfig>) -> io::Result<Self> {
        let conn = UnbufferedServerConnection::new(config).map_err(invalid)?;
        let mut wire = TlsWire {
            tcp,
            conn,
            incoming: Vec::new(),
            outgoing: Vec::new(),
            sent: 0,
            plaintext: Vec::new(),
            taken: 0,
            read_closed: false,
            write_closed: false,
        };
        std::future::poll_fn(|cx| wire.poll_handshake(cx)).await?;
        Ok(wire)
    }

    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            let stand = match self.process(None) {
                Ok(stand) => stand,
                Err(e) => {
                    // The alert rustls queued for the client, if the socket takes it now.
                    self.encode_alert();
                    let _ = self.poll_send(cx);
                    return Poll::Ready(Err(e));
                }
            };
            ready!(self.poll_send(cx))?;
            // A TLS 1.3 server may send data before the client's Finished: wait for it all
            // the same, so what follows sees a finished handshake (ALPN, resumption).
            if stand == Stand::Open && !self.conn.is_handshaking() {
                return Poll::Ready(Ok(()));
            }
            if stand == Stand::Closed || self.read_closed {
                return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
            }
            ready!(self.poll_receive(cx))?;
        }
    }

    /// The protocol the client chose by ALPN, if any.
    pub(crate) fn alpn_protocol(&self) -> Option<&[u8]> {
        self.conn.alpn_protocol()
    }

    /// The socket's peer address.
    pub(crate) fn peer_addr(&self) -> Option<SocketAddr> {
        self.tcp.peer_addr().ok()
    }

    /// Processes what was received until the session waits: decrypted data goes to
    /// `plaintext`, records rustls wants sent to `outgoing`. With `write`, runs it once the
    /// session allows application data.
    fn process(&mut self, mut write: Option<WriteAction<'_>>) -> io::Result<Stand> {
        let Self {
            conn,
            incoming,
            outgoing,
            plaintext,
            read_closed,
            ..
        } = self;
        loop {
            let status = conn.process_tls_records(incoming);
            let mut discard = status.discard;
            let stand = match status.state.map_err(invalid)? {
                ConnectionState::ReadTraffic(mut traffic) => {
                    while let Some(record) = traffic.next_record() {
                        let record = record.map_err(invalid)?;
                        discard += record.discard;
                        plaintext.extend_from_slice(record.payload);
                    }
                    None
                }
                ConnectionState::EncodeTlsData(mut encode) => {
                    append(outgoing, 0, |out| match encode.encode(out) {
                        Ok(n) => Ok(n),
                        Err(EncodeError::InsufficientSize(InsufficientSizeError {
                            required_size,
                        })) => Err(Some(required_size)),
                        Err(_) => Err(None),
                    })?;
                    None
                }
                // The records are in `outgoing`, ahead of anything written later: they leave
                // first, which is all "transmitted" has to mean.
                ConnectionState::TransmitTlsData(transmit) => {
                    transmit.done();
                    None
                }
                ConnectionState::PeerClosed => {
                    *read_closed = true;
                    None
                }
                ConnectionState::Closed => {
                    *read_closed = true;
                    Some(Stand::Closed)
                }
                ConnectionState::BlockedHandshake => Some(Stand::Handshaking),
                ConnectionState::WriteTraffic(mut traffic) => {
                    if let Some(write) = write.take() {
                        write(&mut traffic, outgoing)?;
                    }
                    Some(Stand::Open)
                }
                // Early data is off (the server config accepts none); anything newer is not
                // understood here.
                _ => return Err(invalid("unexpected TLS state")),
            };
            incoming.drain(..discard);
            if let Some(stand) = stand {
                if incoming.is_empty() {
                    // Idle sessions hold no receive buffer.
                    *incoming = Vec::new();
                }
                return Ok(stand);
            }
        }
    }

    /// After a failed handshake or record: puts the alert rustls queued into `outgoing`.
    fn encode_alert(&mut self) {
        let status = self.conn.process_tls_records(&mut []);
        if let Ok(ConnectionState::EncodeTlsData(mut encode)) = status.state {
            let _ = append(&mut self.outgoing, 64, |out| {
                encode.encode(out).map_err(|_| None)
            });
        }
    }

    /// Reads what the socket has (at least one byte, or the end) into `incoming` and
    /// processes it.
    fn poll_receive(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // A subscriber's task polls this at every delivery, and the client is almost always
        // silent: readiness first, so the common answer costs no buffer at all, and the
        // stack chunk is left uninitialised (zeroing 4 KiB per delivery showed in profiles).
        ready!(self.tcp.poll_read_ready(cx))?;
        let mut chunk = [std::mem::MaybeUninit::<u8>::uninit(); READ_CHUNK];
        let mut buf = ReadBuf::uninit(&mut chunk);
        ready!(Pin::new(&mut self.tcp).poll_read(cx, &mut buf))?;
        if buf.filled().is_empty() {
            // The end without a close_notify: the end of the stream all the same (HTTP/1.1
            // and HTTP/2 delimit their messages themselves).
            self.read_closed = true;
            return Poll::Ready(Ok(()));
        }
        if self.incoming.len() + buf.filled().len() > MAX_INCOMING {
            return Poll::Ready(Err(invalid("TLS record or handshake message too large")));
        }
        self.incoming.extend_from_slice(buf.filled());
        self.process(None)?;
        // Answers rustls queued (a key update): sent now if the socket takes them.
        if self.sent < self.outgoing.len() {
            let _ = self.poll_send(cx)?;
        }
        Poll::Ready(Ok(()))
    }

    /// Writes `outgoing` to the socket; frees it once all is written.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.outgoing.len() {
            let n = ready!(Pin::new(&mut self.tcp).poll_write(cx, &self.outgoing[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.outgoing = Vec::new();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }

    /// Decrypted bytes not read yet.
    fn unread(&self) -> &[u8] {
        &self.plaintext[self.taken..]
    }

    fn consume(&mut self, n: usize) {
        self.taken += n;
        if self.taken == self.plaintext.len() {
            self.plaintext = Vec::new();
            self.taken = 0;
        }
    }

    /// Encrypts `data` into `outgoing`; the caller sends it.
    fn encrypt(&mut self, data: &[u8]) -> io::Result<()> {
        let guess = data.len() + data.len().div_ceil(16_384) * RECORD_OVERHEAD + 64;
        let mut done = false;
        let stand = self.process(Some(&mut |traffic, outgoing| {
            done = true;
            append(outgoing, guess, |out| match traffic.encrypt(data, out) {
                Ok(n) => Ok(n),
                Err(EncryptError::InsufficientSize(InsufficientSizeError { required_size })) => {
                    Err(Some(required_size))
                }
                Err(_) => Err(None),
            })
        }))?;
        if !done {
            return Err(match stand {
                Stand::Handshaking => invalid("TLS handshake not finished"),
                _ => io::ErrorKind::BrokenPipe.into(),
            });
        }
        Ok(())
    }
}

/// Appends what `write` puts into a slice of `room` bytes (more if it asks for more) to `out`.
/// `write` returns how many bytes it wrote, or the size it needs (`None`: it failed).
fn append(
    out: &mut Vec<u8>,
    mut room: usize,
    mut write: impl FnMut(&mut [u8]) -> Result<usize, Option<usize>>,
) -> io::Result<()> {
    let start = out.len();
    loop {
        out.resize(start + room, 0);
        match write(&mut out[start..]) {
            Ok(n) => {
                out.truncate(start + n);
                return Ok(());
            }
            Err(Some(needed)) if needed > room => room = needed,
            Err(_) => {
                out.truncate(start);
                return Err(invalid("TLS encoding failed"));
            }
        }
    }
}

fn invalid(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl AsyncRead for TlsWire {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            let unread = this.unread();
            if !unread.is_empty() {
                let n = unread.len().min(buf.remaining());
                buf.put_slice(&unread[..n]);
                this.consume(n);
                return Poll::Ready(Ok(()));
            }
            if this.read_closed {
                return Poll::Ready(Ok(()));
            }
            ready!(this.poll_receive(cx))?;
        }
    }
}

impl AsyncWrite for TlsWire {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.write_closed {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        if this.outgoing.len() - this.sent >= WRITE_HIGH_WATER {
            ready!(this.poll_send(cx))?;
        }
        let data = &data[..data.len().min(MAX_WRITE)];
        this.encrypt(data)?;
        // Sent at once if the socket takes it; the rest on the next write or flush.
        let _ = this.poll_send(cx)?;
        Poll::Ready(Ok(data.len()))
    }

    /// One record for all the slices (a chunk's size line, data and CRLF), not one each.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let mut parts = bufs.iter().filter(|b| !b.is_empty());
        let (Some(first), None) = (parts.next(), parts.clone().next()) else {
            let total: usize = bufs.iter().map(|b| b.len()).sum();
            let mut joined = Vec::with_capacity(total.min(MAX_WRITE));
            for b in bufs {
                let room = MAX_WRITE - joined.len();
                joined.extend_from_slice(&b[..b.len().min(room)]);
            }
            return self.poll_write(cx, &joined);
        };
        self.poll_write(cx, first)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_send(cx)
    }

    /// Sends close_notify (once), then closes the socket's sending side.
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.write_closed {
            this.write_closed = true;
            // A session that cannot send it any more (closed both ways, or broken) closes
            // the socket all the same.
            let _ = this.process(Some(&mut |traffic, outgoing| {
                append(outgoing, 64, |out| {
                    traffic.queue_close_notify(out).map_err(|e| match e {
                        EncryptError::InsufficientSize(s) => Some(s.required_size),
                        _ => None,
                    })
                })
            }));
        }
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.tcp).poll_shutdown(cx)
    }
}

/// The compact path over TLS: a silent client costs no buffer (see the module doc).
impl conn::Wire for TlsWire {
    fn poll_watch(
        &mut self,
        cx: &mut Context<'_>,
        pending: &mut Vec<u8>,
        limit: usize,
    ) -> Poll<bool> {
        loop {
            let unread = self.unread();
            if !unread.is_empty() {
                if pending.len() + unread.len() > limit {
                    return Poll::Ready(false);
                }
                pending.extend_from_slice(unread);
                let n = unread.len();
                self.consume(n);
                return Poll::Ready(true);
            }
            if self.read_closed {
                return Poll::Ready(false);
            }
            if ready!(self.poll_receive(cx)).is_err() {
                return Poll::Ready(false);
            }
        }
    }

    fn peer_addr(&self) -> Option<SocketAddr> {
        TlsWire::peer_addr(self)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls::pki_types::{PrivateKeyDer, ServerName};
    use tokio_rustls::rustls::{ClientConfig, RootCertStore};

    use super::*;

    /// What an idle session costs: after a request and an answer, with nothing in flight, it
    /// holds no buffer at all (the point of owning them; docs/tls-memory.md).
    #[tokio::test]
    async fn an_idle_session_holds_no_buffer() {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let key = PrivateKeyDer::try_from(made.signing_key.serialize_der()).unwrap();
        let config =
            crate::tls::server_config_from_der(vec![made.cert.der().clone()], key).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut wire = TlsWire::accept(tcp, config).await.unwrap();
            let mut hello = [0u8; 5];
            wire.read_exact(&mut hello).await.unwrap();
            assert_eq!(&hello, b"hello");
            // Two slices, as the pump writes a chunk.
            let parts = [IoSlice::new(b"wor"), IoSlice::new(b"ld")];
            let n = wire.write_vectored(&parts).await.unwrap();
            assert_eq!(n, 5);
            wire.flush().await.unwrap();
            let held = (
                wire.incoming.capacity(),
                wire.outgoing.capacity(),
                wire.plaintext.capacity(),
            );
            assert_eq!(held, (0, 0, 0), "buffers held while idle");
            wire.shutdown().await.unwrap();
        });
        let mut roots = RootCertStore::empty();
        roots.add(made.cert.der().clone()).unwrap();
        let client = ClientConfig::builder_with_provider(Arc::new(crate::tls::provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(client))
            .connect(name, tcp)
            .await
            .unwrap();
        tls.write_all(b"hello").await.unwrap();
        let mut answer = Vec::new();
        // To the end, which must be a close_notify (tokio-rustls fails an end without one).
        tls.read_to_end(&mut answer).await.unwrap();
        assert_eq!(answer, b"world");
        server.await.unwrap();
    }
}
