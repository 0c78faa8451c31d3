//! Builds the C baseline of the echo benchmark, `c/echo_epoll.c`, with the system C
//! compiler (`$CC`, else `cc` from `PATH`) into this build's `OUT_DIR` (inside the
//! target directory), and tells the `compare` binary where it is through the
//! `ECHO_C_PATH` environment variable at compile time.
//!
//! Without a working C compiler the crate still builds: `ECHO_C_PATH` is then empty,
//! a warning says why, and `compare` leaves the C server out.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    let source = manifest.join("c").join("echo_epoll.c");
    let binary = out_dir.join("echo_c");
    println!("cargo:rerun-if-changed={}", source.display());
    println!("cargo:rerun-if-env-changed=CC");

    let compiler = env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    let result = Command::new(&compiler)
        .args(["-O2", "-std=gnu11", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(&binary)
        .arg(&source)
        .status();
    match result {
        Ok(status) if status.success() => {
            println!("cargo:rustc-env=ECHO_C_PATH={}", binary.display());
        }
        Ok(status) => {
            println!(
                "cargo:warning=`{compiler}` failed on {} ({status}); compare will skip echo_c",
                source.display()
            );
            println!("cargo:rustc-env=ECHO_C_PATH=");
        }
        Err(error) => {
            println!("cargo:warning=cannot run `{compiler}` ({error}); compare will skip echo_c");
            println!("cargo:rustc-env=ECHO_C_PATH=");
        }
    }
}
