//! Webhook URLs: which ones a subscription may use (https, or plain http to
//! loopback only) and how a URL is shown in messages, logs and evidence:
//! redacted, never with its userinfo or query.

use std::net::IpAddr;

/// Accepts https URLs, and plain http only for loopback hosts. Messages show
/// the URL redacted: never its userinfo or query.
pub fn check_url(url: &str) -> std::result::Result<(), String> {
    let uri: ureq::http::Uri = url.parse().map_err(|e| {
        format!(
            "`{}` is not a valid URL ({e}): write it like https://host/path",
            redact_unparsed_url(url)
        )
    })?;
    let host = uri
        .host()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| format!("`{}` has no host", redact_url(url)))?;
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if is_loopback(host) => Ok(()),
        Some("http") => Err(format!(
            "`{}` uses plain http: use https (http is allowed only for 127.0.0.0/8, ::1 and localhost)",
            redact_url(url)
        )),
        _ => Err(format!("`{}` must start with https://", redact_url(url))),
    }
}

/// The URL with userinfo and query string removed, safe for logs and output.
pub fn redact_url(url: &str) -> String {
    let Ok(uri) = url.parse::<ureq::http::Uri>() else {
        return "<invalid url>".into();
    };
    let mut out = String::new();
    if let Some(scheme) = uri.scheme_str() {
        out.push_str(&format!("{scheme}://"));
    }
    out.push_str(uri.host().unwrap_or_default());
    if let Some(port) = uri.port_u16() {
        out.push_str(&format!(":{port}"));
    }
    out.push_str(uri.path());
    if uri.query().is_some() {
        out.push_str("?<redacted>");
    }
    out
}

/// What a message may show of a URL that does not parse. Without `@`, `?`
/// or `#` there is no userinfo, query or fragment to hide, so all of it;
/// else at most `scheme://host`, and only the scheme when an `@` sits past
/// the first `?` or `#` (the host cannot be told from a password there).
fn redact_unparsed_url(url: &str) -> String {
    if !url.contains(['@', '?', '#']) {
        return url.escape_debug().to_string();
    }
    let is_scheme = |s: &str| {
        s.starts_with(|c: char| c.is_ascii_alphabetic())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    };
    let Some((scheme, rest)) = url.split_once("://").filter(|(s, _)| is_scheme(s)) else {
        return "<unparseable URL, not shown: it may hold credentials>".into();
    };
    let end = rest.find(['?', '#']).unwrap_or(rest.len());
    if rest[end..].contains('@') {
        return format!("{scheme}://<not shown>");
    }
    let authority = &rest[..end];
    let after_userinfo = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = after_userinfo.split('/').next().unwrap_or_default();
    format!("{scheme}://{}", host.escape_debug())
}

fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_http_is_allowed() {
        for url in [
            "http://127.0.0.1:8080/h",
            "http://localhost/h",
            "http://[::1]:9/h",
            "https://example.com/h",
        ] {
            assert_eq!(check_url(url), Ok(()), "{url}");
        }
        assert!(check_url("ftp://example.com").is_err());
        assert!(check_url("http://10.0.0.1/h").is_err());
    }

    #[test]
    fn urls_lose_userinfo_and_query() {
        assert_eq!(
            redact_url("https://user:pw@example.com:8443/a/b?token=x"),
            "https://example.com:8443/a/b?<redacted>"
        );
        assert_eq!(redact_url("http://127.0.0.1/h"), "http://127.0.0.1/h");
        assert_eq!(redact_url("user:pw@host"), "host");
        assert_eq!(redact_url("/hook?token=abc"), "/hook?<redacted>");
    }

    #[test]
    fn url_errors_never_show_userinfo_or_query() {
        let cases = [
            // parses, but is refused
            (
                "http://user:secret@host/hook?token=abc",
                "`http://host/hook?<redacted>` uses plain http",
            ),
            (
                "http://user:pw@10.0.0.1/h?token=x",
                "`http://10.0.0.1/h?<redacted>` uses plain http",
            ),
            (
                "ftp://u:pw@h/x?token=y",
                "`ftp://h/x?<redacted>` must start with https://",
            ),
            ("mailto:user:pw@host", "`host` must start with https://"),
            ("user:pw@host", "`host` must start with https://"),
            ("/hook?token=abc", "`/hook?<redacted>` has no host"),
            // does not parse
            (
                "https://user:pw@ho st/x?token=a",
                "`https://ho st` is not a valid URL",
            ),
            ("https://user:pw@", "`https://` is not a valid URL"),
            ("https://user:pw@/x", "`https://` is not a valid URL"),
            (
                "https://user:p/w@bad host/x",
                "`https://bad host` is not a valid URL",
            ),
            (
                "https://host /x?token=abc",
                "`https://host ` is not a valid URL",
            ),
            (
                "https://ho st/x?token=a@b",
                "`https://<not shown>` is not a valid URL",
            ),
            (
                "https://user:p w?x@host/",
                "`https://<not shown>` is not a valid URL",
            ),
            (
                "https://user:p w#x@host/",
                "`https://<not shown>` is not a valid URL",
            ),
            (
                "user:pw@ho st",
                "`<unparseable URL, not shown: it may hold credentials>` is not",
            ),
            (
                "user:pw ?token=abc",
                "`<unparseable URL, not shown: it may hold credentials>` is not",
            ),
            (
                "pw@token://x y",
                "`<unparseable URL, not shown: it may hold credentials>` is not",
            ),
        ];
        for (url, want) in cases {
            let err = check_url(url).unwrap_err();
            assert!(err.contains(want), "{url}: {err}");
            for secret in ["pw", "secret", "token", "abc"] {
                assert!(!err.contains(secret), "{url}: {err} shows {secret:?}");
            }
        }
        // Nothing to hide: an unparseable string without `@`, `?` or `#` is shown whole.
        let err = check_url("not a url").unwrap_err();
        assert!(err.starts_with("`not a url` is not a valid URL"), "{err}");
        let err = check_url("https://h\n/x").unwrap_err();
        assert!(
            err.starts_with("`https://h\\n/x` is not a valid URL"),
            "{err}"
        );
    }
}
