//! The API boundary, in-process: the server started the way `callboard serve` starts it
//! (`callboard::server`), on port 0, over the embedded SQLite log and read models — no broker,
//! no database server — and driven over HTTP as clients drive it.
//!
//! One binary for every API test (it links the server once); `helpers` starts servers.

mod answers;
mod helpers;
mod hostile;
mod principals;
mod queries;
mod resume;
mod watching;
