//! End-to-end tests of the `lifeboat` binary. One test binary for the whole suite (as ripgrep
//! does): one link step instead of one per file, and shared helpers in `util`.

mod apply;
mod azure;
mod diff;
mod example;
mod examples;
mod malformed;
mod night;
mod plan;
mod plugin;
mod preflight;
mod remote_state;
mod schemas;
mod security;
mod servers;
mod sim_serve;
mod sim_world;
mod state;
mod util;
mod validate_fixtures;
mod walkthrough;
