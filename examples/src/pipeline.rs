//! The `pipeline` module: being written.
