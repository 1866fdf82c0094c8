//! The browser pages: HTML and assets from `web/`, embedded in the binary, and the server-side
//! login check of the pages that need one (docs/API.md §4, "Pages").
//!
//! The pages are static files; everything user-specific is fetched by their ES modules from the
//! REST API and the WebSocket. The server's only decision is whether to serve a page or redirect:
//! `/profile`, `/chat`, `/images` and `/admin` need a valid `sb_access` cookie, else 302 to
//! `/login?next=<path>` (the login page first tries the refresh cookie, so a returning user is
//! not asked for a password); `/admin` sends a non-admin to `/profile`.

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use rust_embed::RustEmbed;

use crate::http::error::ApiError;
use crate::input::credentials::authenticate;
use crate::state::AppState;
use crate::store::Role;

/// The files under `web/`, embedded at compile time (in debug builds too, via `debug-embed`).
/// Cargo rebuilds when an embedded file changes, but not when one is added: touch this file then.
#[derive(RustEmbed)]
#[folder = "web/"]
struct WebFiles;

/// Pages anyone may open.
const PUBLIC_PAGES: [(&str, &str); 4] = [
    ("/login", "login.html"),
    ("/register", "register.html"),
    ("/forgot-password", "forgot-password.html"),
    // The token stays in the query string, where the page's script reads it.
    ("/reset-password", "reset-password.html"),
];

/// Who may open a page that needs a login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Audience {
    /// Any signed-in, active user.
    User,
    /// Admins only; other users are sent to their profile.
    Admin,
}

/// Pages that need a login, with who may see them.
const PRIVATE_PAGES: [(&str, &str, Audience); 4] = [
    ("/profile", "profile.html", Audience::User),
    ("/chat", "chat.html", Audience::User),
    ("/images", "images.html", Audience::User),
    ("/admin", "admin.html", Audience::Admin),
];

/// Registers the page routes and `/assets/{path}`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(|| async { redirect("/profile") }));
    for (path, file) in PUBLIC_PAGES {
        cfg.route(path, web::get().to(move |req: HttpRequest| async move { embedded(&req, file) }));
    }
    for (path, file, audience) in PRIVATE_PAGES {
        cfg.route(
            path,
            web::get().to(move |req: HttpRequest, state: web::Data<AppState>| async move {
                private_page(&req, &state, path, file, audience).await
            }),
        );
    }
    cfg.route("/assets/common-passwords.txt", web::get().to(common_passwords));
    cfg.route("/assets/{path:.*}", web::get().to(asset));
    cfg.route("/vendor/{path:.*}", web::get().to(vendored));
}

/// `GET /assets/common-passwords.txt`: the list the server refuses passwords from, so a page can
/// show the rule while a new password is typed (the same list, so the page and server agree).
async fn common_passwords() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=86400")))
        .body(crate::auth::password::COMMON_PASSWORDS_TEXT)
}

/// `GET /vendor/{path}`: a vendored library or its licence (`web/vendor/`, see its README).
async fn vendored(req: HttpRequest, path: web::Path<String>) -> HttpResponse {
    embedded(&req, &format!("vendor/{}", path.into_inner()))
}

/// Serves a page that needs a login, or redirects to the login page or the profile.
async fn private_page(
    req: &HttpRequest,
    state: &AppState,
    path: &str,
    file: &str,
    audience: Audience,
) -> HttpResponse {
    match authenticate(state, req).await {
        Ok(current) if audience == Audience::Admin && current.user.role != Role::Admin => {
            redirect("/profile")
        }
        Ok(_) => with_topbar(req, file),
        // Storage trouble is not a reason to ask for a password again.
        Err(e @ (ApiError::Unavailable | ApiError::Internal(_))) => HttpResponse::from_error(e),
        // No cookie, an expired or revoked token, a disabled account: the login page sorts it out.
        Err(_) => redirect(&format!("/login?next={path}")),
    }
}

/// Where a signed-in page's top bar goes. Every such page shows the same one (brand, navigation,
/// who is signed in, log out), kept once in `web/partials/topbar.html`.
const TOPBAR_MARKER: &str = "<!-- topbar -->";

/// A page that needs a login, with the shared top bar put in its place.
fn with_topbar(req: &HttpRequest, file: &str) -> HttpResponse {
    let (Some(page), Some(topbar)) = (WebFiles::get(file), WebFiles::get("partials/topbar.html")) else {
        return HttpResponse::from_error(ApiError::NotFound);
    };
    let html = String::from_utf8_lossy(&page.data).replacen(
        TOPBAR_MARKER,
        &String::from_utf8_lossy(&topbar.data),
        1,
    );
    let etag = format!(
        "\"{}-{}\"",
        hex(&page.metadata.sha256_hash()[..12]),
        hex(&topbar.metadata.sha256_hash()[..4])
    );
    respond(req, "text/html; charset=utf-8", etag, html.into_bytes())
}

/// `GET /assets/{path}`: an embedded file with the content type of its extension.
async fn asset(req: HttpRequest, path: web::Path<String>) -> HttpResponse {
    embedded(&req, &format!("assets/{}", path.into_inner()))
}

/// An embedded file with its content type, `no-cache` and an `ETag` (so revalidation is cheap),
/// or the JSON 404 for a file that is not there or of a type the pages do not use.
fn embedded(req: &HttpRequest, file: &str) -> HttpResponse {
    let (Some(content_type), Some(found)) = (content_type(file), WebFiles::get(file)) else {
        return HttpResponse::from_error(ApiError::NotFound);
    };
    let etag = format!("\"{}\"", hex(&found.metadata.sha256_hash()[..16]));
    respond(req, content_type, etag, found.data.into_owned())
}

/// `body` with its content type, `no-cache` and its `ETag`, or 304 when the client has it.
fn respond(req: &HttpRequest, content_type: &'static str, etag: String, body: Vec<u8>) -> HttpResponse {
    let not_modified = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|tag| tag.trim() == etag));
    let mut response = if not_modified { HttpResponse::NotModified() } else { HttpResponse::Ok() };
    response
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-cache")))
        .insert_header((header::ETAG, etag));
    if not_modified {
        return response.finish();
    }
    response.content_type(content_type).body(body)
}

/// The content type for a file name, by extension; `None` for types the pages do not use.
fn content_type(file: &str) -> Option<&'static str> {
    let extension = file.rsplit_once('.')?.1;
    Some(match extension {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        // The vendored libraries' licences and notes.
        "txt" => "text/plain; charset=utf-8",
        "md" => "text/markdown; charset=utf-8",
        _ => return None,
    })
}

fn redirect(location: &str) -> HttpResponse {
    HttpResponse::Found()
        .insert_header((header::LOCATION, location))
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .finish()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_and_asset_the_routes_name_is_embedded() {
        let pages = PUBLIC_PAGES.iter().map(|(_, file)| *file);
        for file in pages.chain(PRIVATE_PAGES.iter().map(|(_, file, _)| *file)) {
            assert!(WebFiles::get(file).is_some(), "{file} is missing from web/");
        }
        for file in WebFiles::iter() {
            assert!(content_type(&file).is_some(), "web/{file} has no content type");
        }
    }

    #[test]
    fn every_signed_in_page_gets_the_one_top_bar() {
        let topbar = WebFiles::get("partials/topbar.html").expect("the top bar");
        let topbar = String::from_utf8_lossy(&topbar.data).into_owned();
        assert!(topbar.contains("<nav"), "{topbar}");
        for (_, file, _) in PRIVATE_PAGES {
            let page = String::from_utf8_lossy(&WebFiles::get(file).unwrap().data).into_owned();
            assert_eq!(page.matches(TOPBAR_MARKER).count(), 1, "{file} marks where its top bar goes");
            assert!(!page.contains("<nav"), "{file} has no navigation of its own");
        }
    }

    #[test]
    fn content_types_follow_the_extension() {
        let cases = [
            ("a.html", Some("text/html; charset=utf-8")),
            ("assets/app.js", Some("text/javascript; charset=utf-8")),
            ("assets/app.css", Some("text/css; charset=utf-8")),
            ("assets/logo.svg", Some("image/svg+xml")),
            ("assets/x.png", Some("image/png")),
            ("favicon.ico", Some("image/x-icon")),
            ("vendor/uplot/LICENSE.txt", Some("text/plain; charset=utf-8")),
            ("vendor/dompurify/purify.es.mjs", Some("text/javascript; charset=utf-8")),
            ("assets/data.json", None),
            ("assets/noextension", None),
        ];
        for (file, expected) in cases {
            assert_eq!(content_type(file), expected, "{file}");
        }
    }
}
