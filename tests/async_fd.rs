//! `edgeloop::io::AsyncFd` over fds that are not sockets (pipes, a child's
//! stdout), through its own methods and through `futures-util`, and the `pipe`
//! example run as a user would.

mod support;

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::time::Duration;

use edgeloop::io::AsyncFd;
use futures_util::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use futures_util::stream::StreamExt;
use support::{ChildGuard, assert_same_bytes, built_example, pattern, with_timeout};

/// A pipe as two files: (read end, write end), both CLOEXEC, still blocking.
fn pipe() -> io::Result<(File, File)> {
    let (r, w) = io::pipe()?;
    Ok((File::from(OwnedFd::from(r)), File::from(OwnedFd::from(w))))
}

/// Whether `O_NONBLOCK` is set on `fd`, read from `/proc/self/fdinfo` (octal flags).
fn is_nonblocking(fd: &impl AsFd) -> bool {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_fd().as_raw_fd()))
        .expect("fdinfo");
    let flags = info
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .map(|f| u32::from_str_radix(f.trim(), 8).expect("octal flags"))
        .expect("a flags line");
    flags & 0o4000 != 0 // O_NONBLOCK
}

#[test]
fn new_sets_nonblocking_and_into_inner_gives_the_fd_back_open() {
    with_timeout(10, "new_sets_nonblocking", || {
        edgeloop::block_on(async {
            let (r, mut w) = pipe()?;
            assert!(!is_nonblocking(&r), "a fresh pipe is blocking");
            let r = AsyncFd::new(r)?;
            assert!(
                is_nonblocking(r.get_ref()),
                "AsyncFd::new did not set O_NONBLOCK"
            );
            w.write_all(b"still open")?;
            let mut r = r.into_inner();
            let mut buf = [0u8; 10];
            r.read_exact(&mut buf)?;
            assert_eq!(&buf, b"still open");
            Ok::<(), io::Error>(())
        })
        .unwrap();
    });
}

#[test]
fn read_with_waits_for_data_written_later_by_another_task() {
    with_timeout(10, "read_with_waits", || {
        edgeloop::block_on(async {
            let (r, w) = pipe()?;
            let r = AsyncFd::new(r)?;
            let w = AsyncFd::new(w)?;
            let writer = edgeloop::spawn(async move {
                edgeloop::time::sleep(Duration::from_millis(20)).await;
                w.write_with(|mut f| f.write(b"late")).await
            });
            let mut buf = [0u8; 16];
            let n = r.read_with(|mut f| f.read(&mut buf)).await?;
            assert_eq!(&buf[..n], b"late");
            assert_eq!(writer.await??, 4);
            Ok::<(), io::Error>(())
        })
        .unwrap();
    });
}

#[test]
fn writable_waits_on_a_full_pipe_until_the_reader_drains_it() {
    with_timeout(10, "writable_waits", || {
        edgeloop::block_on(async {
            let (r, w) = pipe()?;
            let mut w = AsyncFd::new(w)?;
            // Fill the pipe: a non-blocking write then says WouldBlock.
            let chunk = vec![7u8; 64 * 1024];
            let mut filled = 0usize;
            loop {
                match w.try_io(edgeloop::io::Direction::Write, |mut f| f.write(&chunk)) {
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
            assert!(filled > 0);
            let reader = std::thread::spawn(move || {
                let mut r = r;
                let mut sink = vec![0u8; filled + 5];
                r.read_exact(&mut sink).map(|()| sink)
            });
            // Blocks (as a task) until the thread has read enough; then the last
            // five bytes go through.
            w.write_with_mut(|f| f.write_all(b"tail!")).await?;
            drop(w);
            let got = reader.join().unwrap()?;
            assert_eq!(&got[filled..], b"tail!");
            Ok::<(), io::Error>(())
        })
        .unwrap();
    });
}

#[test]
fn futures_util_lines_and_copy_work_over_pipes() {
    with_timeout(20, "futures_util_lines_and_copy", || {
        edgeloop::block_on(async {
            // copy: pipe A -> pipe B, 1 MiB, verified.
            let (a_r, a_w) = pipe()?;
            let (b_r, b_w) = pipe()?;
            let data = pattern(1 << 20, 42);
            let feed = data.clone();
            let writer = edgeloop::spawn(async move {
                let mut a_w = AsyncFd::new(a_w)?;
                a_w.write_all(&feed).await?;
                a_w.close().await
            });
            let copier = edgeloop::spawn(async move {
                let a_r = AsyncFd::new(a_r)?;
                let mut b_w = AsyncFd::new(b_w)?;
                futures_util::io::copy(a_r, &mut b_w).await
            });
            let mut b_r = AsyncFd::new(b_r)?;
            let mut got = Vec::new();
            b_r.read_to_end(&mut got).await?;
            writer.await??;
            assert_eq!(copier.await??, data.len() as u64);
            assert_same_bytes(&got, &data, "copied through two pipes");

            // lines: a child's stdout.
            let mut child = Command::new("sh")
                .args(["-c", "printf 'one\\ntwo\\nthree'"])
                .stdout(Stdio::piped())
                .spawn()?;
            let out = AsyncFd::new(File::from(OwnedFd::from(child.stdout.take().unwrap())))?;
            let lines: Vec<String> = BufReader::new(out)
                .lines()
                .collect::<Vec<_>>()
                .await
                .into_iter()
                .collect::<io::Result<_>>()?;
            assert_eq!(lines, ["one", "two", "three"]);
            assert!(child.wait()?.success());
            Ok::<(), io::Error>(())
        })
        .unwrap();
    });
}

#[test]
fn a_regular_file_is_refused_with_permission_denied() {
    with_timeout(10, "a_regular_file_is_refused", || {
        edgeloop::block_on(async {
            let file = File::open(env!("CARGO_MANIFEST_DIR").to_owned() + "/Cargo.toml").unwrap();
            let same = file.try_clone().unwrap();
            let err = AsyncFd::new(file).expect_err("epoll watched a regular file?");
            assert_eq!(err.kind(), io::ErrorKind::PermissionDenied, "{err:?}");
            // The shared open file was not left non-blocking by the failed call.
            assert!(!is_nonblocking(&same), "O_NONBLOCK set although new failed");
        });
    });
}

#[test]
fn pipe_example_numbers_the_lines_of_a_piped_stdin() {
    with_timeout(240, "pipe_example_stdin", || {
        let exe = built_example("pipe").unwrap();
        let mut child = ChildGuard::spawn(
            Command::new(exe)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        )
        .unwrap();
        // Written and closed (dropped) before reading the output.
        let mut stdin = child.child_mut().stdin.take().expect("stdin");
        stdin.write_all(b"alpha\nbeta\n\ngamma").unwrap();
        drop(stdin);
        let (status, stdout, stderr) = child.output_within(Duration::from_secs(10)).unwrap();
        assert!(status.success(), "{status}: {stderr}");
        assert_eq!(stdout, "1: alpha\n2: beta\n3: \n4: gamma\n4 lines\n");
    });
}

#[test]
fn pipe_example_reads_a_command_while_its_timer_keeps_ticking() {
    with_timeout(240, "pipe_example_command", || {
        let exe = built_example("pipe").unwrap();
        let mut child = ChildGuard::spawn(
            Command::new(exe)
                .args(["--", "sh", "-c", "echo first; sleep 1.3; echo second"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        )
        .unwrap();
        let (status, stdout, stderr) = child.output_within(Duration::from_secs(20)).unwrap();
        assert!(status.success(), "{status}: {stderr}");
        assert_eq!(stdout, "1: first\n2: second\n2 lines\n");
        assert!(
            stderr.contains("(waiting)"),
            "the timer task did not run while the loop waited for the pipe: {stderr:?}"
        );
    });
}

#[test]
fn pipe_example_refuses_a_regular_file_and_bad_arguments() {
    with_timeout(240, "pipe_example_errors", || {
        let exe = built_example("pipe").unwrap();
        let file = File::open(env!("CARGO_MANIFEST_DIR").to_owned() + "/Cargo.toml").unwrap();
        let mut child = ChildGuard::spawn(
            Command::new(&exe)
                .stdin(Stdio::from(file))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        )
        .unwrap();
        let (status, stdout, stderr) = child.output_within(Duration::from_secs(10)).unwrap();
        assert_eq!(status.code(), Some(1), "{stdout} {stderr}");
        assert!(stderr.contains("regular file"), "{stderr}");
        let mut child = ChildGuard::spawn(
            Command::new(&exe)
                .arg("--bogus")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        )
        .unwrap();
        let (status, _, stderr) = child.output_within(Duration::from_secs(10)).unwrap();
        assert_eq!(status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("--bogus"), "{stderr}");
    });
}
