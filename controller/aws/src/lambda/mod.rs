//! Lambda: publish a version checked against the artifact's hash, move an alias by weights.

pub mod alias;
