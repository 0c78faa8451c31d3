//! Timer benchmarks that run edgeloop and tokio's `current_thread` runtime side by
//! side, in one program run.
//!
//! Each benchmark is a binary under `src/bin/`; this library holds what they share:
//! the [`Runtime`] trait that lets one harness drive either runtime, the child
//! process protocol that gives each measured run its own peak-memory counter
//! ([`child`]), readings from `/proc` ([`proc_self`]), the fixed-seed generator that
//! gives both runtimes the same deadlines ([`XorShift`]), and the statistics and
//! table printing ([`stats`], [`Table`]).
//!
//! The binaries interleave their runs (edgeloop, tokio, edgeloop, tokio, ...) and
//! print medians over the rounds; see `bench/README.md` for how to run them.
#![deny(unsafe_code, missing_docs, missing_debug_implementations)]

pub mod args;
pub mod child;
pub mod echo;
pub mod proc_pid;
pub mod proc_self;
pub mod runtime;
pub mod server;
pub mod stats;
pub mod table;
pub mod xorshift;

pub use args::Args;
pub use runtime::{Edgeloop, Runtime, Tokio, Which};
pub use table::Table;
pub use xorshift::XorShift;
