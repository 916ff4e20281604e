//! Fixtures of the keychain tests: a session keyring of the test run's own,
//! and gnome-keyring on a private D-Bus bus.

pub mod keyctl;
pub mod secret_service;
