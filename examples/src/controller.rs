//! The `controller` module: being written.
