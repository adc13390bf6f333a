//! HTTP plumbing shared by the REST API and the Pinning Services API, knowing no route:
//! `auth` (Basic and JWT), `cors`, `request_guard` (Host and Origin checks), `tls`,
//! `first_byte` and `trailers_asked` (connection wrappers), `router` (upstream's route
//! table and matching), `reply` (upstream's JSON, error and stream shapes).

pub mod auth;
pub mod cors;
pub mod first_byte;
pub mod reply;
pub mod request_guard;
pub mod router;
pub mod tls;
pub mod trailers_asked;
