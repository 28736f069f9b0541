//! The run: pages in, labels out. STUB.
