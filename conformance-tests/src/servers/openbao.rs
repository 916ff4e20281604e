//! The OpenBao dev-server fixture (filled in by the Vault backend work).
