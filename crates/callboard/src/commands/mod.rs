//! One module per subcommand.

pub mod import;
pub mod project;
pub mod replay;
pub mod serve;
pub mod validate;
