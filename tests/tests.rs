//! featstore's integration tests, one binary: each module in `suite/` covers one area.
//! Tests that need a server start it themselves on 127.0.0.1:0.

mod suite;
