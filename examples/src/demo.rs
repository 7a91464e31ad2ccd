//! The `demo` module: being written.
