//! Bad-input cases: outputs.
