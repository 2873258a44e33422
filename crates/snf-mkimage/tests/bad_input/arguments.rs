//! Bad-input cases: arguments.
