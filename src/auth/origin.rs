//! The `Host` header and cross-site requests: pure parsers, no I/O.
//!
//! A `Host` is a host name or an IP address (IPv6 in brackets) and an
//! optional port, nothing else; anything else is refused before it is used
//! (it goes into the page's CSP and the WebSocket URL). A request to a
//! cookie endpoint is cross-site when its `Sec-Fetch-Site` says so, or,
//! without that header, when its `Origin`'s host and port differ from the
//! request's `Host` (and from the configured public URL's, behind a proxy).
//! A request with neither header (curl, apps) is not a browser's
//! cross-site request and is allowed.

use std::net::Ipv6Addr;

/// A validated `Host`: the host (IPv6 with its brackets, lower case) and
/// the port if one was given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Host {
    pub host: String,
    pub port: Option<u16>,
}

fn valid_name(h: &str) -> bool {
    // A trailing dot (an absolute name) is allowed once.
    let h = h.strip_suffix('.').unwrap_or(h);
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

fn parse_port(p: &str) -> Option<u16> {
    if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    p.parse().ok()
}

impl Host {
    /// Parses a `Host` header value; `None` if it is anything but
    /// `name[:port]`, `a.b.c.d[:port]` or `[v6][:port]`.
    pub fn parse(s: &str) -> Option<Host> {
        if let Some(rest) = s.strip_prefix('[') {
            let (v6, after) = rest.split_once(']')?;
            v6.parse::<Ipv6Addr>().ok()?;
            let port = match after {
                "" => None,
                p => Some(parse_port(p.strip_prefix(':')?)?),
            };
            return Some(Host {
                host: format!("[{}]", v6.to_ascii_lowercase()),
                port,
            });
        }
        let (h, port) = match s.split_once(':') {
            Some((h, p)) => (h, Some(parse_port(p)?)),
            None => (s, None),
        };
        // IPv4 addresses are names of digits and dots: valid_name takes them.
        valid_name(h).then(|| Host {
            host: h.to_ascii_lowercase(),
            port,
        })
    }

    /// `host:port`, with `default_port` when none was given.
    fn authority(&self, default_port: u16) -> (String, u16) {
        (self.host.clone(), self.port.unwrap_or(default_port))
    }
}

/// The default port of an origin's or URL's scheme (80 or 443).
fn default_port(origin: &str) -> Option<u16> {
    let (scheme, _) = origin.split_once("://")?;
    match scheme.to_ascii_lowercase().as_str() {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    }
}

/// The (host, port) of an origin or URL such as `https://chat.lan:8443`
/// (a path after it is ignored), with the scheme's default port.
pub fn origin_authority(origin: &str) -> Option<(String, u16)> {
    let default_port = default_port(origin)?;
    let (_, rest) = origin.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return None;
    }
    Some(Host::parse(authority)?.authority(default_port))
}

/// Whether a request to a cookie endpoint comes from another site.
/// `host` is the request's validated Host (without a port: the default
/// port of the Origin's scheme, 443 behind a TLS proxy); `public` is the
/// configured public URL, whose origin is also this site's.
pub fn is_cross_site(
    origin: Option<&str>,
    sec_fetch_site: Option<&str>,
    host: Option<&Host>,
    public: Option<&str>,
) -> bool {
    if let Some(site) = sec_fetch_site {
        // "none": typed into the address bar or a bookmark.
        return !(site.eq_ignore_ascii_case("same-origin") || site.eq_ignore_ascii_case("none"));
    }
    let Some(origin) = origin else {
        return false;
    };
    let Some(from) = origin_authority(origin) else {
        // `null` (a sandboxed frame, a file) or garbage.
        return true;
    };
    // A browser leaves the port out of `Host` exactly when it is the
    // default of the scheme it used, which is the Origin's scheme: behind a
    // TLS proxy on 443 that passes `Host` on, `https://chat.lan` and a
    // `Host` of `chat.lan` are the same site.
    let here = host.map(|h| h.authority(default_port(origin).unwrap_or(80)));
    let public = public.and_then(origin_authority);
    Some(&from) != here.as_ref() && Some(&from) != public.as_ref()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hosts_are_names_or_addresses_and_a_port() {
        for ok in [
            "chat.lan",
            "chat.lan:8080",
            "192.168.1.5:8080",
            "[::1]:8080",
            "[fe80::1]",
            "localhost",
            "Chat.LAN.",
        ] {
            assert!(Host::parse(ok).is_some(), "{ok}");
        }
        assert_eq!(
            Host::parse("Chat.Lan:80"),
            Some(Host {
                host: "chat.lan".into(),
                port: Some(80)
            })
        );
        for bad in [
            "",
            "x; script-src *",
            "x y",
            "a:b",
            "a:99999",
            "a:",
            "[::1",
            "[zz]:1",
            "[::1]x",
            "a/b",
            "a@b",
            "-a.lan",
            ".",
            "a..b",
            "\"x\"",
            "x\r\nSet-Cookie: a",
        ] {
            assert!(Host::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn cross_site_is_decided_by_fetch_metadata_then_origin() {
        let host = Host::parse("chat.lan:8080");
        let h = host.as_ref();
        assert!(!is_cross_site(None, None, h, None), "curl and apps");
        assert!(!is_cross_site(Some("http://chat.lan:8080"), None, h, None));
        assert!(is_cross_site(Some("http://evil.example"), None, h, None));
        assert!(is_cross_site(Some("http://chat.lan:8081"), None, h, None));
        assert!(is_cross_site(Some("null"), None, h, None));
        // Behind a TLS proxy on 443 that passes a Host without a port.
        let bare = Host::parse("chat.lan");
        let bare = bare.as_ref();
        assert!(!is_cross_site(Some("https://chat.lan"), None, bare, None));
        assert!(!is_cross_site(Some("http://chat.lan"), None, bare, None));
        assert!(is_cross_site(
            Some("https://chat.lan:8443"),
            None,
            bare,
            None
        ));
        assert!(is_cross_site(
            Some("https://evil.example"),
            None,
            bare,
            None
        ));
        assert!(!is_cross_site(
            Some("http://chat.lan"),
            None,
            Host::parse("chat.lan:80").as_ref(),
            None
        ));
        assert!(is_cross_site(None, Some("cross-site"), h, None));
        assert!(is_cross_site(None, Some("same-site"), h, None));
        assert!(!is_cross_site(
            Some("http://evil.example"),
            Some("same-origin"),
            h,
            None
        ));
        // Behind a TLS proxy the Host may be the proxy's upstream.
        let inner = Host::parse("127.0.0.1:8080");
        assert!(!is_cross_site(
            Some("https://chat.example.com"),
            None,
            inner.as_ref(),
            Some("wss://chat.example.com/websocket")
        ));
        assert!(is_cross_site(
            Some("https://evil.example"),
            None,
            inner.as_ref(),
            Some("wss://chat.example.com/websocket")
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn parsers_never_panic_and_accept_no_separators(s in "\\PC{0,40}") {
            if let Some(h) = Host::parse(&s) {
                prop_assert!(!h.host.contains([' ', ';', ',', '"', '\'', '/', '\\']));
            }
            let _ = origin_authority(&s);
            let _ = is_cross_site(Some(&s), None, None, Some(&s));
            let _ = is_cross_site(None, Some(&s), None, None);
        }

        #[test]
        fn valid_hosts_round_trip(name in "[a-z][a-z0-9-]{0,10}[a-z0-9](\\.[a-z]{1,5}){0,3}", port in proptest::option::of(any::<u16>())) {
            let s = match port { Some(p) => format!("{name}:{p}"), None => name.clone() };
            prop_assert_eq!(Host::parse(&s), Some(Host { host: name, port }));
        }
    }
}
