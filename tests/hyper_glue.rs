#![cfg(feature = "hyper")]
//! `edgeloop::hyper` in one process: hyper servers and clients on edgeloop streams
//! (`HyperIo` over TCP and Unix sockets, nested adapters), the executor, the timer
//! on a paused clock.

mod support;

use std::cell::Cell;
use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use edgeloop::hyper::{HyperExecutor, HyperIo, HyperTimer};
use edgeloop::net::{TcpListener, TcpStream, UnixStream};
use edgeloop::time;
use futures_util::io::AsyncReadExt;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::rt::Executor;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, header};
use support::{IO_TIMEOUT, assert_same_bytes, pattern, with_timeout};

/// A service that answers each request with its own body.
async fn echo_body(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let body = request.into_body().collect().await?.to_bytes();
    Ok(Response::new(Full::new(body)))
}

/// `POST /` with `body` on `sender`'s connection; the response's status and body.
async fn post(
    sender: &mut SendRequest<Full<Bytes>>,
    body: Bytes,
) -> io::Result<(StatusCode, Bytes)> {
    let request = Request::post("/")
        .header(header::HOST, "test")
        .body(Full::new(body))
        .map_err(io::Error::other)?;
    support::hyper_exchange(sender, request).await
}

#[test]
fn keep_alive_client_and_server_in_process_use_one_tcp_connection() -> io::Result<()> {
    with_timeout(120, "in-process keep-alive", || {
        edgeloop::block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            let accepted = Rc::new(Cell::new(0u32));
            let counter = Rc::clone(&accepted);
            edgeloop::spawn(async move {
                loop {
                    let (stream, _) = listener.accept().await?;
                    counter.set(counter.get() + 1);
                    edgeloop::spawn(async move {
                        http1::Builder::new()
                            .timer(HyperTimer)
                            .serve_connection(HyperIo::new(stream), service_fn(echo_body))
                            .await
                    });
                }
                #[expect(unreachable_code, reason = "gives the block its type")]
                Ok::<(), io::Error>(())
            });

            let stream = time::timeout(IO_TIMEOUT, TcpStream::connect(addr)).await??;
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(HyperIo::new(stream))
                    .await
                    .map_err(io::Error::other)?;
            let connection = edgeloop::spawn(connection);
            for i in 0..100u64 {
                let body = Bytes::from(pattern(100 + i as usize * 37, i));
                let (status, echoed) = post(&mut sender, body.clone()).await?;
                assert_eq!(status, StatusCode::OK, "request {i}");
                assert_same_bytes(&echoed, &body, &format!("request {i}"));
            }
            assert_eq!(accepted.get(), 1, "connections the server accepted");
            drop(sender);
            connection
                .await
                .expect("no panic")
                .map_err(io::Error::other)?;
            assert_eq!(accepted.get(), 1, "connections the server accepted");
            Ok(())
        })
    })
}

#[test]
fn a_megabyte_body_crosses_a_unix_pair_through_nested_adapters_byte_exact() -> io::Result<()> {
    with_timeout(120, "unix pair, nested adapters", || {
        edgeloop::block_on(async {
            let (server_side, client_side) = UnixStream::pair()?;
            // Three layers: hyper reads through a `futures-io` view of a hyper view of
            // the stream, so a read happens while an outer one holds the scratch buffer.
            let nested = HyperIo::new(HyperIo::new(HyperIo::new(server_side)));
            let server = edgeloop::spawn(
                http1::Builder::new().serve_connection(nested, service_fn(echo_body)),
            );
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(HyperIo::new(client_side))
                    .await
                    .map_err(io::Error::other)?;
            // The executor takes the connection future like any other.
            HyperExecutor.execute(async move {
                if let Err(e) = connection.await {
                    eprintln!("client connection: {e}");
                }
            });
            for (i, len) in [0, 1, 8 * 1024, 1024 * 1024 + 3].into_iter().enumerate() {
                let body = Bytes::from(pattern(len, 90 + i as u64));
                let (status, echoed) = post(&mut sender, body.clone()).await?;
                assert_eq!(status, StatusCode::OK);
                assert_same_bytes(&echoed, &body, &format!("body of {len} bytes"));
            }
            drop(sender);
            // The client closed: the server's connection ends cleanly.
            time::timeout(IO_TIMEOUT, server)
                .await?
                .expect("no panic")
                .map_err(io::Error::other)
        })
    })
}

#[test]
fn the_executor_runs_local_futures_in_order_of_execution() {
    with_timeout(60, "executor", || {
        edgeloop::block_on(async {
            let order = Rc::new(std::cell::RefCell::new(Vec::new())); // `!Send`
            for i in 0..3 {
                let order = Rc::clone(&order);
                HyperExecutor.execute(async move { order.borrow_mut().push(i) });
            }
            assert!(
                order.borrow().is_empty(),
                "tasks run only once the caller yields"
            );
            edgeloop::yield_now().await;
            assert_eq!(*order.borrow(), [0, 1, 2]);
        });
    });
}

#[test]
fn the_header_timeout_runs_on_edgeloop_time_and_follows_a_paused_clock() -> io::Result<()> {
    with_timeout(60, "header timeout, paused clock", || {
        let real_start = Instant::now();
        edgeloop::block_on(async {
            time::pause();
            let start = time::now();
            let (server_side, mut client_side) = UnixStream::pair()?;
            let server = edgeloop::spawn(async move {
                let result = http1::Builder::new()
                    .timer(HyperTimer)
                    .header_read_timeout(Duration::from_secs(30))
                    .serve_connection(HyperIo::new(server_side), service_fn(echo_body))
                    .await;
                (result, time::now())
            });
            client_side
                .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
                .await?;
            // Nothing more: every task idles, so the paused clock jumps to the
            // timer's deadline and the server gives up on the head.
            let mut rest = Vec::new();
            client_side.read_to_end(&mut rest).await?;
            assert!(
                rest.is_empty(),
                "the server sent {:?}",
                String::from_utf8_lossy(&rest)
            );
            let (result, ended) = server.await.expect("no panic");
            let error = result.expect_err("a stalled head must end the connection with an error");
            assert!(error.is_timeout(), "not a timeout: {error}");
            let waited = ended - start;
            assert!(
                waited >= Duration::from_secs(30) && waited < Duration::from_secs(31),
                "the connection ended {waited:?} into the paused clock"
            );
            Ok::<_, io::Error>(())
        })?;
        assert!(
            real_start.elapsed() < Duration::from_secs(20),
            "a paused clock took real time"
        );
        Ok(())
    })
}
