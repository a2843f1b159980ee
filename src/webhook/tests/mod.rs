//! Unit tests of the pure gate: decisions, messages, patches.

mod decide;
mod fixture;
mod mutate;
