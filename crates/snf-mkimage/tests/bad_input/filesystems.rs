//! Bad-input cases: filesystems.
