//! The micro-batcher. STUB.
