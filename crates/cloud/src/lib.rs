//! Cloud accounts, upload and registration (being written).
