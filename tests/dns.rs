//! Name resolution never blocks the loop: host names go to the blocking pool,
//! literals resolve inline; errors name the host.

mod support;

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Mutex;
use std::thread::{self, ThreadId};
use std::time::Duration;

use edgeloop::net::{TcpListener, TcpStream, lookup_host};
use edgeloop::{Runtime, time};
use support::{echo, roundtrip, with_timeout};

/// The name the stub resolver answers slowly.
const SLOW_NAME: &str = "slow.edgeloop.test";
/// How long the stub takes for it.
const SLOW: Duration = Duration::from_millis(300);

/// Threads the stub ran on.
static STUB_THREADS: Mutex<Vec<ThreadId>> = Mutex::new(Vec::new());

/// Answers `SLOW_NAME` with 127.0.0.1 after `SLOW`; every other name as the system
/// does. Installed once for the whole binary, so tests running in parallel that
/// resolve other names see the real resolver.
fn stub(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    if host != SLOW_NAME {
        return std::net::ToSocketAddrs::to_socket_addrs(&(host, port)).map(Iterator::collect);
    }
    STUB_THREADS.lock().unwrap().push(thread::current().id());
    thread::sleep(SLOW);
    Ok(vec![SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)])
}

fn install_stub() {
    edgeloop::net::__private::set_resolver(Some(stub));
}

#[test]
fn connect_and_bind_by_host_name() {
    with_timeout(20, "connect_and_bind_by_host_name", || {
        edgeloop::block_on(async {
            let listener = TcpListener::bind("localhost:0").await?;
            let addr = listener.local_addr()?;
            assert!(addr.ip().is_loopback(), "bound to {addr}");
            let server = edgeloop::spawn(async move {
                let (stream, _) = listener.accept().await?;
                echo(stream).await
            });
            let mut client = TcpStream::connect(("localhost", addr.port())).await?;
            assert_eq!(roundtrip(&mut client, b"by name").await?, b"by name");
            drop(client);
            assert_eq!(server.await??, 7, "bytes echoed");
            Ok::<(), io::Error>(())
        })
        .unwrap();
    });
}

#[test]
fn lookup_host_gives_loopback_addresses_for_localhost() {
    with_timeout(
        20,
        "lookup_host_gives_loopback_addresses_for_localhost",
        || {
            let addrs: Vec<SocketAddr> = edgeloop::block_on(async {
                lookup_host("localhost:4321").await.map(Iterator::collect)
            })
            .unwrap();
            assert!(!addrs.is_empty(), "no address for localhost");
            for a in &addrs {
                assert!(a.ip().is_loopback() && a.port() == 4321, "{addrs:?}");
            }
        },
    );
}

#[test]
fn a_name_that_does_not_resolve_gives_an_error_naming_it() {
    with_timeout(
        20,
        "a_name_that_does_not_resolve_gives_an_error_naming_it",
        || {
            let name = "no-such-host.invalid:80";
            let err = edgeloop::block_on(TcpStream::connect(name)).expect_err("connected?");
            assert!(
                err.to_string().contains("no-such-host.invalid"),
                "the error should name the host: {err}"
            );
            assert_ne!(err.kind(), io::ErrorKind::WouldBlock, "{err:?}");
            let err = edgeloop::block_on(lookup_host(name))
                .err()
                .expect("lookup of an .invalid name succeeded");
            assert!(err.to_string().contains("no-such-host.invalid"), "{err}");
        },
    );
}

#[test]
fn ip_literals_resolve_inline_without_the_blocking_pool() {
    with_timeout(
        20,
        "ip_literals_resolve_inline_without_the_blocking_pool",
        || {
            let rt = Runtime::new().unwrap();
            rt.block_on(async {
                let listener = TcpListener::bind("127.0.0.1:0").await?;
                let addr = listener.local_addr()?;
                let _client = TcpStream::connect(addr.to_string()).await?;
                let _again = TcpStream::connect(("127.0.0.1", addr.port())).await?;
                Ok::<(), io::Error>(())
            })
            .unwrap();
            let m = rt.metrics();
            assert_eq!(
                m.blocking_threads, 0,
                "a literal went through the pool: {m:?}"
            );
        },
    );
}

#[test]
fn a_slow_lookup_runs_off_the_loop_while_other_tasks_keep_running() {
    with_timeout(
        20,
        "a_slow_lookup_runs_off_the_loop_while_other_tasks_keep_running",
        || {
            install_stub();
            let loop_thread = thread::current().id();
            let (addrs, ticks) = edgeloop::block_on(async {
                let ticks = std::rc::Rc::new(std::cell::Cell::new(0u32));
                let counter = ticks.clone();
                let ticker = edgeloop::spawn(async move {
                    let mut interval = time::interval(Duration::from_millis(10));
                    loop {
                        interval.tick().await;
                        counter.set(counter.get() + 1);
                    }
                });
                let addrs: Vec<SocketAddr> = lookup_host((SLOW_NAME, 99)).await?.collect();
                // Read in the same poll that saw the lookup finish: had the lookup
                // blocked the loop, the ticker could not have run meanwhile.
                let ticks = ticks.get();
                ticker.abort();
                Ok::<_, io::Error>((addrs, ticks))
            })
            .unwrap();
            assert_eq!(
                addrs,
                vec![SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 99)]
            );
            // 300 ms at one tick per 10 ms is about 30; 10 leaves room for a slow box.
            assert!(ticks >= 10, "only {ticks} ticks during a 300 ms lookup");
            let threads = STUB_THREADS.lock().unwrap().clone();
            assert!(!threads.is_empty(), "the stub resolver never ran");
            assert!(
                !threads.contains(&loop_thread),
                "the lookup ran on the loop's thread"
            );
        },
    );
}

#[test]
fn a_timer_fires_on_time_during_a_slow_lookup() {
    with_timeout(20, "a_timer_fires_on_time_during_a_slow_lookup", || {
        install_stub();
        edgeloop::block_on(async {
            let lookup =
                edgeloop::spawn(async { lookup_host((SLOW_NAME, 1)).await.map(|a| a.count()) });
            // The lookup takes 300 ms; this 20 ms sleep must end long before it.
            time::sleep(Duration::from_millis(20)).await;
            assert!(
                !lookup.is_finished(),
                "the lookup was done before a 20 ms sleep ended: did it block the loop?"
            );
            assert_eq!(lookup.await.unwrap().unwrap(), 1);
        });
    });
}
