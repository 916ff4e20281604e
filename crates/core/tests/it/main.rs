//! The integration tests of credstore-core, one module per topic.

mod batch;
mod history;
mod registry;
mod validation;
