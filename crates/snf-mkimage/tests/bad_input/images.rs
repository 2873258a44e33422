//! Bad-input cases: images.
