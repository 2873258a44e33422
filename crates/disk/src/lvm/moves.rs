//! Copying moved extents.
