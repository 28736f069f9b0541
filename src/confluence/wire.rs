//! serde mirrors of the Confluence REST JSON. STUB.
