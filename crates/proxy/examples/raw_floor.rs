//! The floor of any tokio-based HTTP/1.1 proxy on this machine: one current-thread runtime,
//! `httparse` on both sides, one upstream keep-alive pool, and nothing a gateway does — no
//! routing, no header maps, no plugins, no timeouts, no error handling beyond closing the
//! connection. Requests without a body only; responses must carry `Content-Length`.
//!
//! `bench/README.md` measures it beside nginx and Gatehouse to show how much of
//! the distance to nginx is the runtime and the kernel and how much is the gateway's own work:
//!
//! ```sh
//! cargo run --release -p gatehouse-proxy --example raw_floor -- 127.0.0.1:18092 127.0.0.1:18080
//! ```
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

type Pool = Rc<RefCell<Vec<(TcpStream, Vec<u8>)>>>;

fn invalid() -> io::Error {
    io::ErrorKind::InvalidData.into()
}

/// Reads into `buf` until `parse` finds a complete head; returns what `parse` returned.
async fn read_until<T>(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    mut parse: impl FnMut(&[u8]) -> io::Result<Option<T>>,
) -> io::Result<Option<T>> {
    loop {
        if let Some(done) = parse(buf)? {
            return Ok(Some(done));
        }
        buf.reserve(4096);
        if stream.read_buf(buf).await? == 0 {
            return Ok(None);
        }
    }
}

async fn connection(mut client: TcpStream, upstream: SocketAddr, pool: Pool) -> io::Result<()> {
    let mut buf = Vec::with_capacity(8192);
    let mut out = Vec::with_capacity(8192);
    loop {
        // The request head, rewritten for the upstream with two forwarding headers.
        let parsed = read_until(&mut client, &mut buf, |b| {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut req = httparse::Request::new(&mut headers);
            match req.parse(b).map_err(|_| invalid())? {
                httparse::Status::Partial => Ok(None),
                httparse::Status::Complete(n) => {
                    out.clear();
                    out.extend_from_slice(req.method.unwrap_or("GET").as_bytes());
                    out.push(b' ');
                    out.extend_from_slice(req.path.unwrap_or("/").as_bytes());
                    out.extend_from_slice(b" HTTP/1.1\r\n");
                    for h in req.headers.iter() {
                        out.extend_from_slice(h.name.as_bytes());
                        out.extend_from_slice(b": ");
                        out.extend_from_slice(h.value);
                        out.extend_from_slice(b"\r\n");
                    }
                    out.extend_from_slice(b"x-forwarded-for: 127.0.0.1\r\nvia: 1.1 floor\r\n\r\n");
                    Ok(Some(n))
                }
            }
        })
        .await?;
        let Some(head_len) = parsed else {
            return Ok(());
        };
        buf.drain(..head_len);
        let idle = pool.borrow_mut().pop();
        let (mut up, mut ubuf) = match idle {
            Some(conn) => conn,
            None => {
                let s = TcpStream::connect(upstream).await?;
                s.set_nodelay(true)?;
                (s, Vec::with_capacity(8192))
            }
        };
        up.write_all(&out).await?;
        // The response head, rewritten for the client, and its Content-Length body.
        let mut reply = Vec::with_capacity(512);
        let parsed = read_until(&mut up, &mut ubuf, |b| {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(b).map_err(|_| invalid())? {
                httparse::Status::Partial => Ok(None),
                httparse::Status::Complete(n) => {
                    let mut len: Option<usize> = None;
                    reply.clear();
                    reply.extend_from_slice(b"HTTP/1.1 ");
                    reply.extend_from_slice(resp.code.unwrap_or(200).to_string().as_bytes());
                    reply.extend_from_slice(b" OK\r\n");
                    for h in resp.headers.iter() {
                        if h.name.eq_ignore_ascii_case("content-length") {
                            len = std::str::from_utf8(h.value)
                                .ok()
                                .and_then(|v| v.parse().ok());
                        }
                        reply.extend_from_slice(h.name.as_bytes());
                        reply.extend_from_slice(b": ");
                        reply.extend_from_slice(h.value);
                        reply.extend_from_slice(b"\r\n");
                    }
                    reply.extend_from_slice(b"via: 1.1 floor\r\n\r\n");
                    Ok(Some((n, len.ok_or_else(invalid)?)))
                }
            }
        })
        .await?;
        let Some((head_len, body_len)) = parsed else {
            return Err(invalid());
        };
        while ubuf.len() < head_len + body_len {
            ubuf.reserve(4096);
            if up.read_buf(&mut ubuf).await? == 0 {
                return Err(invalid());
            }
        }
        reply.extend_from_slice(&ubuf[head_len..head_len + body_len]);
        ubuf.drain(..head_len + body_len);
        pool.borrow_mut().push((up, ubuf));
        client.write_all(&reply).await?;
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: raw_floor <listen addr> <upstream addr>";
    let listen: SocketAddr = args.next().and_then(|a| a.parse().ok()).expect(usage);
    let upstream: SocketAddr = args.next().and_then(|a| a.parse().ok()).expect(usage);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let listener = TcpListener::bind(listen).await.expect("cannot listen");
        println!("raw floor proxy listening on http://{listen}, forwarding to {upstream}");
        let pool: Pool = Rc::new(RefCell::new(Vec::new()));
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::task::spawn_local(connection(stream, upstream, pool.clone()));
        }
    });
}
