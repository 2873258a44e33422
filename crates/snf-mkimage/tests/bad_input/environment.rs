//! Bad-input cases: environment.
