//! The futures ecosystem on edgeloop: `futures-util`'s I/O helpers (`AsyncReadExt`,
//! `AsyncWriteExt`, `io::copy`, `BufReader::lines`) on edgeloop's TCP streams, its
//! `select!` and `join!`, and channels (`futures-channel`'s mpsc and oneshot,
//! `async-channel`) between tasks and from a `spawn_blocking` thread back to a task.
//! Every test checks exact values: bytes, lines, which branch won and why.

mod support;

use std::io;
use std::time::Duration;

use edgeloop::net::{TcpListener, TcpStream};
use edgeloop::time;
use futures_util::future::FutureExt;
use futures_util::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use futures_util::sink::SinkExt;
use futures_util::stream::StreamExt;
use futures_util::{join, pin_mut, select, select_biased};
use support::{IO_TIMEOUT, assert_same_bytes, joined, pattern, with_timeout};

/// A connected pair of TCP streams on 127.0.0.1: (client, server).
async fn tcp_pair() -> io::Result<(TcpStream, TcpStream)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let accept = edgeloop::spawn(async move { listener.accept().await });
    let client = time::timeout(IO_TIMEOUT, TcpStream::connect(addr)).await??;
    let (server, _) = time::timeout(IO_TIMEOUT, accept)
        .await?
        .expect("no panic")?;
    Ok((client, server))
}

#[test]
fn read_ext_and_write_ext_move_exact_bytes_on_a_tcp_stream() -> io::Result<()> {
    with_timeout(60, "AsyncReadExt/AsyncWriteExt", || {
        edgeloop::block_on(async {
            let (mut client, mut server) = tcp_pair().await?;
            let payload = pattern(300_000, 1);
            // The server reads a 5-byte tag with `read_exact`, the rest with
            // `read_to_end`, and answers with the tag and the payload reversed.
            let server_task = edgeloop::spawn(async move {
                let mut tag = [0u8; 5];
                AsyncReadExt::read_exact(&mut server, &mut tag).await?;
                let mut rest = Vec::new();
                AsyncReadExt::read_to_end(&mut server, &mut rest).await?;
                rest.reverse();
                AsyncWriteExt::write_all(&mut server, &tag).await?;
                AsyncWriteExt::write_all(&mut server, &rest).await?;
                AsyncWriteExt::flush(&mut server).await?;
                AsyncWriteExt::close(&mut server).await?; // shutdown(Write): EOF
                Ok::<_, io::Error>(rest.len())
            });
            AsyncWriteExt::write_all(&mut client, b"hello").await?;
            AsyncWriteExt::write_all(&mut client, &payload).await?;
            AsyncWriteExt::close(&mut client).await?;

            let mut tag = [0u8; 5];
            AsyncReadExt::read_exact(&mut client, &mut tag).await?;
            assert_eq!(&tag, b"hello");
            let mut answer = Vec::new();
            let n = time::timeout(
                IO_TIMEOUT,
                AsyncReadExt::read_to_end(&mut client, &mut answer),
            )
            .await??;
            assert_eq!(n, payload.len());
            let mut expected = payload.clone();
            expected.reverse();
            assert_same_bytes(&answer, &expected, "reversed payload");
            assert_eq!(joined(server_task.await)??, payload.len());
            // At EOF, `read_exact` says so.
            let err = AsyncReadExt::read_exact(&mut client, &mut tag)
                .await
                .unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
            Ok(())
        })
    })
}

#[test]
fn io_copy_relays_a_connection_into_another_byte_exact() -> io::Result<()> {
    with_timeout(60, "futures_util::io::copy", || {
        edgeloop::block_on(async {
            // source -> (relay: copy) -> sink: two connections, one task copying.
            let (mut source, relay_in) = tcp_pair().await?;
            let (relay_out, mut sink) = tcp_pair().await?;
            let relay = edgeloop::spawn(async move {
                let mut relay_out = relay_out;
                let copied = futures_util::io::copy(relay_in, &mut relay_out).await?;
                relay_out.close().await?;
                Ok::<_, io::Error>(copied)
            });
            let data = pattern(2 * 1024 * 1024 + 17, 2);
            let send = async {
                AsyncWriteExt::write_all(&mut source, &data).await?;
                AsyncWriteExt::close(&mut source).await
            };
            let mut received = Vec::new();
            let receive = AsyncReadExt::read_to_end(&mut sink, &mut received);
            let (sent, got) =
                time::timeout(IO_TIMEOUT, futures_util::future::join(send, receive)).await?;
            sent?;
            assert_eq!(got?, data.len());
            assert_same_bytes(&received, &data, "relayed bytes");
            assert_eq!(joined(relay.await)??, data.len() as u64, "copy's count");
            Ok(())
        })
    })
}

#[test]
fn buf_reader_lines_yields_every_line_as_sent() -> io::Result<()> {
    with_timeout(60, "BufReader::lines", || {
        edgeloop::block_on(async {
            let (client, mut server) = tcp_pair().await?;
            // Lines cut across writes, an empty line, CRLF, a long line, and a last
            // line without a newline.
            let long = "x".repeat(100_000);
            let text = "first\nsec";
            let writer = edgeloop::spawn(async move {
                AsyncWriteExt::write_all(&mut server, text.as_bytes()).await?;
                time::sleep(Duration::from_millis(5)).await;
                let rest = format!("ond\n\nwindows\r\n{long}\nlast");
                AsyncWriteExt::write_all(&mut server, rest.as_bytes()).await?;
                AsyncWriteExt::close(&mut server).await
            });
            let lines: Vec<String> = time::timeout(
                IO_TIMEOUT,
                BufReader::new(client)
                    .lines()
                    .map(|l| l.expect("a line"))
                    .collect(),
            )
            .await?;
            joined(writer.await)??;
            let long = "x".repeat(100_000);
            assert_eq!(
                lines,
                ["first", "second", "", "windows", long.as_str(), "last"]
            );
            Ok(())
        })
    })
}

#[test]
fn select_takes_the_branch_that_is_ready_and_biased_select_the_first() -> io::Result<()> {
    with_timeout(60, "select!", || {
        edgeloop::block_on(async {
            // Data on a socket against a minute's timer: the socket wins, with the bytes.
            let (mut client, mut server) = tcp_pair().await?;
            AsyncWriteExt::write_all(&mut server, b"ping").await?;
            let mut buf = [0u8; 16];
            let read = AsyncReadExt::read(&mut client, &mut buf).fuse();
            let timer = time::sleep(Duration::from_secs(60)).fuse();
            pin_mut!(read, timer);
            let winner = select! {
                n = read => format!("read {:?}", String::from_utf8_lossy(&buf[..n?])),
                () = timer => "timer".to_owned(),
            };
            assert_eq!(winner, "read \"ping\"");

            // Two timers on a paused clock: the earlier deadline wins, at its time.
            time::pause();
            let start = time::now();
            let late = time::sleep(Duration::from_secs(2)).fuse();
            let early = time::sleep(Duration::from_secs(1)).fuse();
            pin_mut!(late, early);
            let winner = select! {
                () = late => "late",
                () = early => "early",
            };
            assert_eq!(
                (winner, time::now() - start),
                ("early", Duration::from_secs(1))
            );
            // The loser is still pending, and completes at its own deadline.
            late.await;
            assert_eq!(time::now() - start, Duration::from_secs(2));
            time::resume();

            // Both ready at once: `select_biased!` takes the first one listed.
            let (tx, rx) = futures_channel::oneshot::channel::<u32>();
            tx.send(7).expect("the receiver is alive");
            let mut rx = rx.fuse();
            let mut now = std::future::ready(1u32).fuse();
            let winner = select_biased! {
                v = rx => ("channel", v.expect("sent")),
                v = now => ("ready", v),
            };
            assert_eq!(winner, ("channel", 7));

            // A loop over a stream and a timer until both are done (`complete`).
            let (mut tx, rx) = futures_channel::mpsc::channel::<u32>(4);
            edgeloop::spawn(async move {
                for i in 1..=3 {
                    tx.send(i).await.expect("the receiver is alive");
                }
            });
            let mut rx = rx.fuse();
            let mut timer = time::sleep(Duration::from_millis(10)).fuse();
            let mut events = Vec::new();
            loop {
                select! {
                    item = rx.next() => match item {
                        Some(i) => events.push(format!("item {i}")),
                        None => events.push("closed".to_owned()),
                    },
                    () = timer => events.push("timer".to_owned()),
                    complete => break,
                }
            }
            // The items come in order and the stream ends once; the timer fires once.
            let mut stream_events = events.clone();
            stream_events.retain(|e| e != "timer");
            assert_eq!(stream_events, ["item 1", "item 2", "item 3", "closed"]);
            assert_eq!(
                events.iter().filter(|e| *e == "timer").count(),
                1,
                "{events:?}"
            );
            Ok(())
        })
    })
}

#[test]
fn join_runs_its_futures_at_once_and_returns_every_output() -> io::Result<()> {
    with_timeout(60, "join!", || {
        edgeloop::block_on(async {
            // One task writes 4 MiB to an echo peer while reading the echo: done one
            // after the other, both would stall on full socket buffers.
            let (client, server) = tcp_pair().await?;
            let echo = edgeloop::spawn(support::echo(server));
            let (mut reader, mut writer) = client.into_split();
            let data = pattern(4 * 1024 * 1024, 3);
            let mut echoed = Vec::new();
            let write = async {
                AsyncWriteExt::write_all(&mut writer, &data).await?;
                AsyncWriteExt::close(&mut writer).await
            };
            let read = AsyncReadExt::read_to_end(&mut reader, &mut echoed);
            let (written, read) = time::timeout(IO_TIMEOUT, async { join!(write, read) }).await?;
            written?;
            assert_eq!(read?, data.len());
            assert_same_bytes(&echoed, &data, "echo");
            assert_eq!(joined(echo.await)??, data.len() as u64);

            // Three timers joined take as long as the longest, not the sum.
            time::pause();
            let start = time::now();
            let sleep_then = |secs: u64| async move {
                time::sleep(Duration::from_secs(secs)).await;
                secs * 10
            };
            let outputs = join!(sleep_then(3), sleep_then(1), sleep_then(2));
            assert_eq!(outputs, (30, 10, 20));
            assert_eq!(time::now() - start, Duration::from_secs(3));
            Ok(())
        })
    })
}

#[test]
fn futures_channel_mpsc_and_oneshot_carry_values_between_tasks() {
    with_timeout(60, "futures-channel between tasks", || {
        edgeloop::block_on(async {
            // A bounded channel: the producer waits whenever the buffer is full, and
            // every value arrives once, in order.
            let (mut tx, mut rx) = futures_channel::mpsc::channel::<u64>(2);
            let producer = edgeloop::spawn(async move {
                for i in 0..1000 {
                    tx.send(i * i).await.expect("the receiver is alive");
                }
                // Dropping `tx` here ends the stream.
            });
            let mut received = Vec::new();
            while let Some(v) = rx.next().await {
                received.push(v);
            }
            assert_eq!(received, (0..1000).map(|i| i * i).collect::<Vec<u64>>());
            joined(producer.await).expect("the producer finished");

            // oneshot: a value from a task, and `Canceled` when the sender is dropped.
            let (tx, rx) = futures_channel::oneshot::channel::<String>();
            edgeloop::spawn(async move {
                time::sleep(Duration::from_millis(2)).await;
                tx.send("done".to_owned()).expect("the receiver is alive");
            });
            assert_eq!(rx.await, Ok("done".to_owned()));
            let (tx, rx) = futures_channel::oneshot::channel::<String>();
            edgeloop::spawn(async move {
                time::sleep(Duration::from_millis(2)).await;
                drop(tx);
            });
            assert_eq!(rx.await, Err(futures_channel::oneshot::Canceled));
        });
    });
}

#[test]
fn async_channel_fans_in_from_many_tasks_and_reports_the_close() {
    with_timeout(60, "async-channel between tasks", || {
        edgeloop::block_on(async {
            let (tx, rx) = async_channel::bounded::<(u32, u32)>(1);
            for producer in 0..4 {
                let tx = tx.clone();
                edgeloop::spawn(async move {
                    for seq in 0..50 {
                        tx.send((producer, seq))
                            .await
                            .expect("the receiver is alive");
                    }
                });
            }
            drop(tx);
            let mut received = Vec::new();
            // `recv` fails once every sender is gone and the channel is empty.
            while let Ok(item) = rx.recv().await {
                received.push(item);
            }
            assert_eq!(received.len(), 200);
            for producer in 0..4 {
                let seqs: Vec<u32> = received
                    .iter()
                    .filter(|(p, _)| *p == producer)
                    .map(|&(_, s)| s)
                    .collect();
                assert_eq!(
                    seqs,
                    (0..50).collect::<Vec<u32>>(),
                    "producer {producer}'s order"
                );
            }
            assert!(rx.is_closed());
        });
    });
}

#[test]
fn channels_carry_values_from_a_blocking_thread_back_to_a_task() {
    with_timeout(60, "channels from spawn_blocking", || {
        let rt = edgeloop::Runtime::new().expect("a runtime");
        rt.block_on(async {
            let (mpsc_tx, mut mpsc_rx) = futures_channel::mpsc::unbounded::<u32>();
            let (oneshot_tx, oneshot_rx) = futures_channel::oneshot::channel::<&'static str>();
            let (async_tx, async_rx) = async_channel::bounded::<Vec<u8>>(1);
            // The blocking thread sleeps first, so the runtime is asleep in epoll when
            // each value comes: the wakes cross threads.
            let blocking = edgeloop::spawn_blocking(move || {
                let thread = std::thread::current().id();
                for i in 1..=3 {
                    std::thread::sleep(Duration::from_millis(10));
                    mpsc_tx.unbounded_send(i).expect("the receiver is alive");
                }
                drop(mpsc_tx);
                std::thread::sleep(Duration::from_millis(10));
                oneshot_tx
                    .send("from the pool")
                    .expect("the receiver is alive");
                for chunk in [b"abc".to_vec(), b"defg".to_vec()] {
                    std::thread::sleep(Duration::from_millis(10));
                    async_tx
                        .send_blocking(chunk)
                        .expect("the receiver is alive");
                }
                thread
            });
            let mut values = Vec::new();
            while let Some(v) = mpsc_rx.next().await {
                values.push(v);
            }
            assert_eq!(values, [1, 2, 3]);
            assert_eq!(oneshot_rx.await, Ok("from the pool"));
            let mut bytes = Vec::new();
            while let Ok(chunk) = async_rx.recv().await {
                bytes.extend(chunk);
            }
            assert_eq!(bytes, b"abcdefg");
            let pool_thread = blocking.await.expect("the blocking job finished");
            assert_ne!(
                pool_thread,
                std::thread::current().id(),
                "ran on another thread"
            );
        });
        let metrics = rt.metrics();
        assert!(metrics.epoll_waits > 0, "the runtime slept between values");
    });
}
