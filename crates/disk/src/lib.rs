//! Source media, snapshot, partition tables and the diskdump (being written).
