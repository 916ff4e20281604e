//! Layers for real deployments (in progress).
