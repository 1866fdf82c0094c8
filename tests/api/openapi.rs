//! The API document: `GET /api/openapi.json` is OpenAPI 3 and lists exactly the routes the
//! router serves, read from the router's own table (`switchboard::http::route_list`).

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::support::app::spawn_app;

#[actix_web::test]
async fn the_openapi_document_lists_every_route() {
    let app = spawn_app().await;

    let response = app.request(Method::GET, "/api/openapi.json").send().await.unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    let content_type =
        response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    assert!(content_type.starts_with("application/json"), "JSON, got {content_type:?}");
    let doc: Value = response.json().await.unwrap();
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")), "OpenAPI 3: {}", doc["openapi"]);
    let paths = doc["paths"].as_object().expect("paths");
    // The router's own table: a route without documentation, or a documented one that is not
    // routed, fails here.
    let routes = switchboard::http::route_list();
    for (path, methods) in &routes {
        let item = paths.get(*path).unwrap_or_else(|| panic!("{path} is documented"));
        for method in methods {
            let method = method.as_str().to_lowercase();
            assert!(item.get(&method).is_some(), "{path} documents {method}");
        }
    }
    for (path, item) in paths {
        let routed = routes.iter().find(|(p, _)| p == path).unwrap_or_else(|| panic!("{path} is routed"));
        for method in item.as_object().unwrap().keys() {
            assert!(
                routed.1.iter().any(|m| m.as_str().eq_ignore_ascii_case(method)),
                "the documented {method} {path} is routed"
            );
        }
    }
    assert!(routes.len() >= 27, "the table holds every route: {}", routes.len());
}
