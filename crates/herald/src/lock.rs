//! The SDK's one way of taking a lock.

use std::sync::{Mutex, MutexGuard};

/// Locks a mutex, ignoring poisoning: the data behind these locks stays consistent
/// across a panic (queues and maps, with no invariant spanning two fields).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
