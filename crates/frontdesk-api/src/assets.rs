//! Static assets compiled into the binary (SPEC §9): the visitor widget at `/widget.js`
//! (the committed, minified `web/widget/dist/widget.min.js`; shops' pages load it from any
//! origin) and the agent console at `/console` (`web/console/`, plain files, served under a
//! Content-Security-Policy without `unsafe-inline`). The server needs no build step: the
//! widget's minified output is committed, and `rust-embed` puts both folders in the binary
//! (debug builds read them from the source tree, so an edit shows at the next reload).

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use rust_embed::RustEmbed;

use crate::AppState;

#[derive(RustEmbed)]
#[folder = "../../web/widget/dist/"]
struct WidgetDist;

#[derive(RustEmbed)]
#[folder = "../../web/console/"]
struct ConsoleFiles;

/// The file the widget snippet loads.
pub const WIDGET_FILE: &str = "widget.min.js";

/// The console's policy: everything from this origin, sockets to it, no inline code.
pub const CONSOLE_CSP: &str =
    "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; style-src 'self'; script-src 'self'";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/widget.js", get(widget))
        .route("/console", get(console_index))
        .route("/console/", get(console_index))
        .route("/console/{*path}", get(console_file))
}

async fn widget() -> Response {
    let Some(file) = WidgetDist::get(WIDGET_FILE) else {
        return (StatusCode::NOT_FOUND, "the widget was not built into this binary").into_response();
    };
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("application/javascript; charset=utf-8")),
            (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300")),
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*")),
            (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        ],
        file.data.into_owned(),
    )
        .into_response()
}

async fn console_index() -> Response {
    console_response("index.html")
}

async fn console_file(Path(path): Path<String>) -> Response {
    let path = if path.is_empty() { "index.html" } else { path.as_str() };
    console_response(path)
}

fn console_response(path: &str) -> Response {
    let security = [
        (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONSOLE_CSP)),
        (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
    ];
    // An unknown path inside the console is one of its own views: answer the page.
    let (path, file) = match ConsoleFiles::get(path) {
        Some(file) => (path, file),
        None if !path.contains('.') => match ConsoleFiles::get("index.html") {
            Some(file) => ("index.html", file),
            None => {
                return (StatusCode::NOT_FOUND, security, "the console was not built into this binary").into_response();
            }
        },
        None => return (StatusCode::NOT_FOUND, security, "no such console file").into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type(path))),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        security,
        file.data.into_owned(),
    )
        .into_response()
}

/// The content type of a console file, by extension.
pub fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "application/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        _ => "application/octet-stream",
    }
}

/// FNV-1a, 64 bits: the widget build stamps the source's hash into the minified file, so a
/// test can tell a stale `dist/` from a current one without running the minifier.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const GZIP_HARD_LIMIT: usize = 20 * 1024;

    fn widget_bytes() -> Vec<u8> {
        WidgetDist::get(WIDGET_FILE).expect("web/widget/dist/widget.min.js is embedded").data.into_owned()
    }

    #[test]
    fn the_widget_stays_under_20_kb_gzipped() {
        let bytes = widget_bytes();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&bytes).expect("gzip in memory");
        let size = gz.finish().expect("gzip in memory").len();
        assert!(
            size <= GZIP_HARD_LIMIT,
            "widget.min.js is {size} bytes gzipped, over the {GZIP_HARD_LIMIT} byte limit"
        );
        assert!(bytes.len() > 1000, "the minified widget is suspiciously small ({} bytes)", bytes.len());
    }

    #[test]
    fn the_minified_widget_is_built_from_the_current_source() {
        let source = include_bytes!("../../../web/widget/widget.js");
        let stamp = format!("src:{:016x}", fnv1a64(source));
        let min = String::from_utf8(widget_bytes()).expect("the widget is UTF-8");
        assert!(
            min.lines().next().is_some_and(|first| first.contains(&stamp)),
            "web/widget/dist/widget.min.js is older than web/widget/widget.js: run `npm run build` in web/widget"
        );
    }

    #[test]
    fn the_console_has_no_inline_script_or_handler() {
        let page = ConsoleFiles::get("index.html").expect("web/console/index.html is embedded");
        let html = String::from_utf8(page.data.into_owned()).expect("UTF-8").to_lowercase();
        for script in html.split("<script").skip(1) {
            let tag = script.split('>').next().unwrap_or_default();
            assert!(tag.contains("src="), "an inline <script> in the console page breaks its CSP: <script{tag}>");
            let body = script.split_once('>').map(|(_, rest)| rest).unwrap_or_default();
            assert!(body.trim_start().starts_with("</script"), "a <script src> with inline code in the console page");
        }
        assert!(
            !html.contains(" onclick=") && !html.contains(" onload=") && !html.contains(" style="),
            "inline handlers or styles"
        );
        for file in ["console.js", "console.css"] {
            assert!(ConsoleFiles::get(file).is_some(), "web/console/{file} is embedded");
        }
    }

    #[test]
    fn content_types_by_extension() {
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("console.js"), "application/javascript; charset=utf-8");
        assert_eq!(content_type("console.css"), "text/css; charset=utf-8");
        assert_eq!(content_type("LICENSE"), "application/octet-stream");
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
