//! The command line of `snf-mkimage`, as a library so that the man page and the shell
//! completions are generated from the same definition (`cargo run -p xtask`).

#![forbid(unsafe_code)]

pub mod cli;
