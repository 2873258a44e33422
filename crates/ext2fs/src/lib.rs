//! Binding to libext2fs (being written).
