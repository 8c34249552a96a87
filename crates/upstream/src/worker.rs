//! Which listener worker thread the caller runs on, so an upstream client
//! can keep one connection pool per worker (no cross-thread wake-ups on
//! the hot path).

use std::cell::Cell;

thread_local! {
    static WORKER: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The index of the worker thread the caller runs on (`None` off the workers).
pub fn worker_index() -> Option<usize> {
    WORKER.with(Cell::get)
}

/// Say that this thread is worker `index` (done once by each worker thread).
pub fn set_worker_index(index: usize) {
    WORKER.with(|w| w.set(Some(index)));
}
