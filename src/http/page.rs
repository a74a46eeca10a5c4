//! The chat page: static files built into the binary (`web/`), served with
//! the headers a page on a LAN without internet needs: exact content types,
//! revalidated caching (ETag), and a strict Content-Security-Policy that
//! allows scripts and styles from this server only.

use std::sync::OnceLock;

use blake2::{Blake2s256, Digest};

use super::HttpEnv;
use super::request::HttpRequest;
use super::response::{Reply, ReplyBody};

/// One embedded file.
#[derive(Debug)]
pub struct Asset {
    pub path: &'static str,
    pub content_type: &'static str,
    pub bytes: &'static [u8],
}

static ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        bytes: include_bytes!("../../web/index.html"),
    },
    Asset {
        path: "/app.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../web/app.js"),
    },
    // The entry module's imports (web/js/), loaded by the browser as ES modules.
    Asset {
        path: "/js/api.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../web/js/api.js"),
    },
    Asset {
        path: "/js/backoff.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../web/js/backoff.js"),
    },
    Asset {
        path: "/js/connection.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../web/js/connection.js"),
    },
    Asset {
        path: "/js/convs.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../web/js/convs.js"),
    },
    Asset {
        path: "/js/dates.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../web/js/dates.js"),
    },
    Asset {
        path: "/js/dom.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../web/js/dom.js"),
    },
    Asset {
        path: "/js/groups-ui.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../web/js/groups-ui.js"),
    },
    Asset {
        path: "/js/order.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../web/js/order.js"),
    },
    Asset {
        path: "/js/presence.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../web/js/presence.js"),
    },
    Asset {
        path: "/js/proto.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../web/js/proto.js"),
    },
    Asset {
        path: "/js/receipts.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../web/js/receipts.js"),
    },
    Asset {
        path: "/js/sidebar-view.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../web/js/sidebar-view.js"),
    },
    Asset {
        path: "/js/store.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../web/js/store.js"),
    },
    Asset {
        path: "/js/thread-view.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../web/js/thread-view.js"),
    },
    Asset {
        path: "/js/unread.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../web/js/unread.js"),
    },
    Asset {
        path: "/app.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../../web/app.css"),
    },
    Asset {
        path: "/favicon.svg",
        content_type: "image/svg+xml",
        bytes: include_bytes!("../../web/favicon.svg"),
    },
];

/// The embedded file at `path` (`/index.html` is `/`).
pub fn asset(path: &str) -> Option<&'static Asset> {
    let path = if path == "/index.html" { "/" } else { path };
    ASSETS.iter().find(|a| a.path == path)
}

impl Asset {
    /// A strong validator for the file's bytes, computed once.
    pub fn etag(&'static self) -> &'static str {
        static TAGS: OnceLock<Vec<String>> = OnceLock::new();
        let tags = TAGS.get_or_init(|| {
            ASSETS
                .iter()
                .map(|a| {
                    let digest = Blake2s256::digest(a.bytes);
                    let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
                    format!("\"{hex}\"")
                })
                .collect()
        });
        let i = ASSETS
            .iter()
            .position(|a| std::ptr::eq(a, self))
            .unwrap_or(0);
        tags.get(i).map_or("\"\"", String::as_str)
    }
}

/// The page's Content-Security-Policy. `ws_origin` (like `ws://host:8081`)
/// is where the page may open its WebSocket; nothing else leaves the page.
pub fn content_security_policy(ws_origin: &str) -> String {
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self' {ws_origin}; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
}

/// Headers every page response carries, besides its type and validator.
pub const SECURITY_HEADERS: &[(&str, &str)] = &[
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
];

/// The WebSocket URL a browser should use: the configured public URL
/// (behind a TLS proxy: `wss://...`), or this server's WebSocket port on
/// the host the browser used to reach the page.
pub fn websocket_url(
    public_url: Option<&str>,
    host_header: Option<&str>,
    ws_port: u16,
    context: &str,
) -> String {
    if let Some(url) = public_url {
        return url.to_string();
    }
    let host = host_header.map(host_only).unwrap_or("127.0.0.1");
    format!("ws://{host}:{ws_port}/{context}")
}

/// `host:port` or `[v6]:port` without the port.
fn host_only(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_inclusive(']').next().unwrap_or(host);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

/// `ws://host:port` of a WebSocket URL, for the CSP.
pub fn origin_of(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url[after_scheme..].find('/') {
        Some(i) => &url[..after_scheme + i],
        None => url,
    }
}

/// The WebSocket URL the page should use.
pub fn ws_url(env: &HttpEnv, req: &HttpRequest) -> String {
    websocket_url(
        env.ws_public_url.as_deref(),
        req.host.as_deref(),
        env.ws_port,
        &env.ws_context,
    )
}

/// A page file, revalidated by ETag on every load (so a new binary's page
/// is picked up at once) and locked down by its CSP.
pub fn page_reply(env: &HttpEnv, req: &HttpRequest, asset: &'static Asset) -> Reply {
    let etag = asset.etag();
    let unchanged = req
        .if_none_match
        .as_deref()
        .is_some_and(|t| t.split(',').any(|t| t.trim() == etag));
    let mut reply = Reply {
        status: if unchanged { 304 } else { 200 },
        body: if unchanged {
            ReplyBody::Empty
        } else {
            ReplyBody::Static(asset)
        },
        headers: vec![
            ("Cache-Control", "no-cache".into()),
            ("ETag", etag.to_string()),
            (
                "Content-Security-Policy",
                content_security_policy(origin_of(&ws_url(env, req))),
            ),
        ],
    };
    for (k, v) in SECURITY_HEADERS {
        reply.headers.push((k, v.to_string()));
    }
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assets_have_types_and_stable_etags() {
        let index = asset("/").expect("index");
        assert!(index.content_type.starts_with("text/html"));
        assert_eq!(asset("/index.html").map(|a| a.path), Some("/"));
        assert_eq!(index.etag(), index.etag());
        assert_ne!(index.etag(), asset("/app.js").unwrap().etag());
        assert!(asset("/../Cargo.toml").is_none());
    }

    #[test]
    fn every_module_the_page_imports_is_served_as_javascript() {
        let sources: Vec<&Asset> = ASSETS.iter().filter(|a| a.path.ends_with(".js")).collect();
        for a in &sources {
            assert!(a.content_type.starts_with("text/javascript"), "{}", a.path);
            let text = std::str::from_utf8(a.bytes).expect("utf-8");
            // `from "./js/x.js"` in app.js, `from "./x.js"` in web/js/.
            for imported in text.split("from \"./").skip(1) {
                let file = imported.split('"').next().unwrap_or_default();
                let dir = a.path.rsplit_once('/').map_or("", |(d, _)| d);
                let path = format!("{dir}/{file}");
                assert!(
                    asset(&path).is_some(),
                    "{} imports {path}, which is not served",
                    a.path
                );
            }
        }
    }

    #[test]
    fn the_websocket_url_follows_the_host_the_browser_used() {
        assert_eq!(
            websocket_url(None, Some("192.168.1.5:8080"), 8081, "websocket"),
            "ws://192.168.1.5:8081/websocket"
        );
        assert_eq!(
            websocket_url(None, Some("[::1]:8080"), 9, "ws"),
            "ws://[::1]:9/ws"
        );
        assert_eq!(
            websocket_url(None, Some("chat.lan"), 8081, "websocket"),
            "ws://chat.lan:8081/websocket"
        );
        assert_eq!(
            websocket_url(Some("wss://chat.example/websocket"), Some("x"), 1, "w"),
            "wss://chat.example/websocket"
        );
        assert_eq!(
            origin_of("wss://chat.example/websocket"),
            "wss://chat.example"
        );
        assert_eq!(
            origin_of("ws://10.0.0.1:8081/websocket"),
            "ws://10.0.0.1:8081"
        );
    }

    #[test]
    fn the_policy_allows_only_this_server() {
        let csp = content_security_policy("ws://h:1");
        assert!(
            csp.contains("default-src 'none'")
                && csp.contains("script-src 'self'")
                && csp.contains("connect-src 'self' ws://h:1")
        );
        assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"));
    }
}
