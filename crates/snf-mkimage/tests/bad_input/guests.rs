//! Bad-input cases: guests.
