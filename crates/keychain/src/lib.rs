//! The operating system credential store as a credstore backend (in progress).
