//! The hot path allocates nothing: once warmed up, TCP echo round trips inside one
//! runtime (accepting task, client in `block_on`) make zero heap allocations on the
//! runtime's thread. Counted by a global allocator that counts per thread.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io;

use edgeloop::net::{TcpListener, TcpStream};

struct CountingAllocator;

thread_local! {
    /// Whether this thread's allocations are being counted.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    /// Allocations counted on this thread.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn note_allocation() {
    // `try_with`: the allocator also runs while thread-locals are being torn down.
    let _ = COUNTING.try_with(|on| {
        if on.get() {
            let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        }
    });
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so
// `System`'s guarantees hold; the counting touches only const-initialised
// thread-locals, which never allocate.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: forwarded unchanged; the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: forwarded unchanged; the caller upholds `alloc_zeroed`'s contract.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        // SAFETY: forwarded unchanged; the caller upholds `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged; the caller upholds `dealloc`'s contract.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

async fn round_trip(client: &mut TcpStream, msg: &[u8], buf: &mut [u8]) -> io::Result<()> {
    client.write_all(msg).await?;
    let mut got = 0;
    while got < msg.len() {
        let n = client.read(&mut buf[got..msg.len()]).await?;
        assert_ne!(n, 0, "server closed after {got} bytes");
        got += n;
    }
    assert_eq!(&buf[..msg.len()], msg, "echo differs");
    Ok(())
}

#[test]
fn echo_round_trips_allocate_nothing_after_warm_up() -> io::Result<()> {
    edgeloop::block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server = edgeloop::spawn(async move {
            let (mut stream, _) = listener.accept().await?;
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                let n = stream.read(&mut buf).await?;
                if n == 0 {
                    return Ok::<_, io::Error>(());
                }
                stream.write_all(&buf[..n]).await?;
            }
        });
        let mut client = TcpStream::connect(addr).await?;
        let msg: Vec<u8> = (0..64u8).collect();
        let mut buf = vec![0u8; 64];
        for _ in 0..200 {
            round_trip(&mut client, &msg, &mut buf).await?;
        }
        COUNTING.with(|c| c.set(true));
        for _ in 0..2_000 {
            round_trip(&mut client, &msg, &mut buf).await?;
        }
        COUNTING.with(|c| c.set(false));
        let allocations = ALLOCATIONS.with(Cell::get);
        assert_eq!(
            allocations, 0,
            "{allocations} heap allocations in 2000 warmed-up round trips"
        );
        drop(client);
        server.await??;
        Ok(())
    })
}

#[test]
fn the_counter_sees_allocations() {
    // Guards the test above against passing because counting is broken.
    COUNTING.with(|c| c.set(true));
    let v = std::hint::black_box(vec![1u8; 100]);
    COUNTING.with(|c| c.set(false));
    drop(v);
    let n = ALLOCATIONS.with(Cell::get);
    assert!(n >= 1, "counted {n} allocations for a Vec");
    ALLOCATIONS.with(|c| c.set(0));
}
