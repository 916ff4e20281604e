//! The integration tests of credstore-core, one module per topic.

mod registry;
mod validation;
