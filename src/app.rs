//! Composition root. STUB.
