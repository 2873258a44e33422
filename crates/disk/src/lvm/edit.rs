//! Editing a VG in memory.
