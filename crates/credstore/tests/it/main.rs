//! The integration tests of the `credstore` crate: stores opened from URIs,
//! the layer parameters, and what is refused.

mod open;
