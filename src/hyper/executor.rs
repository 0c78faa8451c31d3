//! [`HyperExecutor`]: hyper's `Executor` on [`spawn`](crate::spawn).

use std::future::Future;

use ::hyper::rt::Executor;

/// A [`hyper::rt::Executor`] that [`spawn`](crate::spawn)s on the current edgeloop
/// runtime. Takes any future, `Send` or not (see the [module docs](super)); the task
/// is detached.
///
/// # Panics
///
/// `execute` panics outside [`block_on`](crate::block_on), as `spawn` does.
///
/// # Examples
///
/// ```
/// use std::cell::Cell;
/// use std::rc::Rc;
///
/// use edgeloop::hyper::HyperExecutor;
/// use hyper::rt::Executor;
///
/// edgeloop::block_on(async {
///     let ran = Rc::new(Cell::new(false)); // `!Send`
///     let flag = ran.clone();
///     HyperExecutor.execute(async move { flag.set(true) });
///     edgeloop::yield_now().await;
///     assert!(ran.get());
/// });
/// ```
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HyperExecutor;

impl<F> Executor<F> for HyperExecutor
where
    F: Future + 'static,
    F::Output: 'static,
{
    fn execute(&self, future: F) {
        // Detached: hyper keeps no handle to the tasks it starts.
        drop(crate::spawn(future));
    }
}
