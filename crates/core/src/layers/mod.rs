//! The layers core ships: [`TraceLayer`] and [`TimeoutLayer`]. See
//! [`crate::Layer`] for how they stack.

mod timeout;
mod trace;

pub use timeout::{TimeoutLayer, TimeoutStore};
pub use trace::{TraceLayer, TracedStore};
