//! Fixtures of the keychain tests: a session keyring of the test run's own,
//! and gnome-keyring on a private D-Bus bus.

pub use credstore_test_servers::keyctl;
pub mod secret_service;
