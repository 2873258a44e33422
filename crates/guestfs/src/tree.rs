//! Placeholder: the guest tree is being written.
