//! The bundled offline demo space. STUB.
pub const SPACE_KEY: &str = "DEMO";
