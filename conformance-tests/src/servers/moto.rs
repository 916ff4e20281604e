//! The moto_server fixture (filled in by the AWS backend work).
