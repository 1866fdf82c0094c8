//! Credentials: password hashing, JWTs and random tokens. The extractors that find and check a
//! request's credential are an edge, in `input/credentials.rs`.

pub mod jwt;
pub mod password;
pub mod tokens;

/// Cookie holding the access token (HttpOnly).
pub const ACCESS_COOKIE: &str = "sb_access";
/// Cookie holding the refresh token (HttpOnly, only sent to the refresh route).
pub const REFRESH_COOKIE: &str = "sb_refresh";
/// Cookie holding the CSRF token (readable by script, echoed in [`CSRF_HEADER`]).
pub const CSRF_COOKIE: &str = "sb_csrf";
/// Header that must repeat the CSRF cookie on cookie-authenticated unsafe requests.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Path the refresh cookie is limited to.
pub const REFRESH_PATH: &str = "/api/token/refresh";
