//! What herald's tests and benchmarks share, so that each exists once:
//!
//! - [`pg`]: a fresh PostgreSQL database for one test or measurement, created and
//!   dropped through the server's maintenance database.
//! - [`sse`]: a Server-Sent Events reader that owns no I/O: fed the bytes of a
//!   response as they arrive, it gives back its comments and messages.
//!
//! No shipped crate depends on it.

pub mod pg;
pub mod sse;
