//! One test per find, named after it, each saying what broke.
