//! Everything a run shows a person. STUB.
