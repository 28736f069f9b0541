//! The bundled offline demo space. STUB.
