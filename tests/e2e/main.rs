//! End-to-end tests: the real probe in the running kernel, real sockets driven by separate
//! processes on loopback, every assertion filtered to the test's own ports.

mod causes_netns;
mod errors;
mod export;
mod export_dashboard;
mod export_fates;
mod export_mtls;
mod export_storm;
mod export_tls;
mod fates;
mod findings;
mod owners;
mod packaging;
mod replay;
mod states;
mod support;
mod trace;
mod transitions;
mod transitions_netns;
mod tui;
