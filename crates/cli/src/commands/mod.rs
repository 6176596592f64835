pub mod ab;
pub mod edit;
pub mod eval;
pub mod generate;
pub mod info;
pub mod prepare;
pub mod schedule;
pub mod train;
