//! Task utilities: [`JoinSet`] (with its [`AbortHandle`]), and the cooperative budget's
//! [`consume_budget`] and [`unconstrained`].

mod join_set;

pub use crate::coop::{Unconstrained, consume_budget, unconstrained};
pub use join_set::{AbortHandle, JoinSet};
