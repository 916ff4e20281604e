//! The layers core ships: [`TraceLayer`] and [`TimeoutLayer`], both built on
//! [`Around`]. See [`crate::Layer`] for how they stack.

mod around;
mod timeout;
mod trace;

pub use around::{Around, AroundStore, Call, CallFuture, Operation, ProbeFuture};
pub use timeout::{TimeoutLayer, TimeoutStore};
pub use trace::{TraceLayer, TracedStore};
