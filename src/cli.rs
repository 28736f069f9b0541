//! Command-line flags. STUB.
