//! Writing metadata back.
