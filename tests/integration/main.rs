
mod preflight;
mod sim_world;
