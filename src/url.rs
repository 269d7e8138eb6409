//! Webhook URLs: which ones a subscription may use (https, or plain http to
//! loopback only, with a port a connection can use), which hosts are chat
//! platforms, how a URL is shown in messages, logs and evidence (redacted,
//! never with its userinfo or query, and for chat platforms, whose webhook
//! path is the credential, never with the path after its first segment,
//! nor a path's only segment),
//! and which parts of it are credentials a receiver must not be able to
//! echo into the evidence ([`credentials`]). A host that ends in a number
//! is read as an IPv4 address in every form browsers and the system
//! resolver accept ([`host_ip`]: `2852039166`, `0xa9fea9fe`, `127.1`), so
//! that what it points at is known before anything is sent.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

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
    host_ip(host).map_err(|why| format!("`{}`: {why}", redact_url(url)))?;
    // With an `@` in the path the "port" may be the start of a password.
    let may_be_password = uri.path().contains('@');
    check_port(&uri).map_err(|why| match why {
        BadPort::OutOfRange(port) if !may_be_password => format!(
            "`{}` has port {port}: a port is a number from 1 to 65535",
            redact_url(url)
        ),
        _ => format!(
            "`{}://<not shown>` has a port that is not a number from 1 to 65535: a `/`, `?` or `#` in a user name or password must be written %2F, %3F or %23 (else the host is read as the text before the `:`)",
            uri.scheme_str().unwrap_or_default()
        ),
    })?;
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

/// Why a URL's port cannot be connected to.
enum BadPort {
    /// Not digits, or digits followed by a path that starts like `34@host`:
    /// a password holding a `/`, which ends the authority early
    /// (`https://user:p/w@host` is host `user`, port `p`).
    NotANumber,
    OutOfRange(String),
}

/// The `http` crate accepts any text after the host's `:` (and gives no
/// port for it): only 1–65535, or no port at all, can be connected to.
fn check_port(uri: &ureq::http::Uri) -> Result<(), BadPort> {
    let Some(authority) = uri.authority() else {
        return Ok(());
    };
    let host_port = authority
        .as_str()
        .rsplit_once('@')
        .map_or(authority.as_str(), |(_, h)| h);
    let after_host = match host_port.rfind(']') {
        Some(end) => &host_port[end + 1..],
        None => host_port.find(':').map_or("", |i| &host_port[i..]),
    };
    let Some(port) = after_host.strip_prefix(':').filter(|p| !p.is_empty()) else {
        return Ok(()); // no port, or an empty one: the scheme's default
    };
    if !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(BadPort::NotANumber);
    }
    // `user:12/34@host/h` parses as host `user`, port 12, path `/34@host/h`.
    let first_segment = uri.path().trim_start_matches('/').split('/').next();
    let no_userinfo = !authority.as_str().contains('@');
    if no_userinfo
        && first_segment
            .and_then(|s| s.find('@'))
            .is_some_and(|at| at > 0)
    {
        return Err(BadPort::NotANumber);
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(BadPort::OutOfRange(port.to_string())),
    }
}

/// What a URL that must not be shown at all says in a message.
pub const HIDDEN_URL: &str = "<URL not shown>";

/// Like [`check_url`], for a URL that is a secret as a whole (`url_env`):
/// messages never show any of it.
pub fn check_secret_url(url: &str) -> std::result::Result<(), String> {
    let uri: ureq::http::Uri = url
        .parse()
        .map_err(|e| format!("it is not a valid URL ({e}): write it like https://host/path"))?;
    let host = uri
        .host()
        .filter(|h| !h.is_empty())
        .ok_or("the URL has no host")?;
    host_ip(host).map_err(|why| format!("the URL: {why}"))?;
    check_port(&uri).map_err(|_| {
        "the URL's port is not a number from 1 to 65535 (a `/`, `?` or `#` in a password must be written %2F, %3F or %23)".to_string()
    })?;
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if is_loopback(host) => Ok(()),
        Some("http") => Err(
            "the URL uses plain http: use https (http is allowed only for 127.0.0.0/8, ::1 and localhost)".into(),
        ),
        _ => Err("the URL must start with https://".into()),
    }
}

/// The chat platform a webhook URL belongs to, by its host: `Slack`,
/// `Discord` or `Teams`; `None` for any other host (Mattermost is
/// self-hosted, so it has no known host).
pub fn chat_platform(url: &str) -> Option<&'static str> {
    let uri = url.parse::<ureq::http::Uri>().ok()?;
    let host = uri.host()?.to_ascii_lowercase();
    let host = host.trim_end_matches('.');
    let under = |domain: &str| host == domain || host.ends_with(&format!(".{domain}"));
    if host == "hooks.slack.com" {
        Some("Slack")
    } else if under("discord.com") || under("discordapp.com") {
        Some("Discord")
    } else if host.ends_with(".webhook.office.com")
        || host.ends_with(".logic.azure.com")
        || host.ends_with(".api.powerplatform.com")
    {
        Some("Teams")
    } else {
        None
    }
}

/// The URL with userinfo and query string removed, safe for logs and output;
/// for a chat platform's host, also the path as [`redact_url_path`] hides it.
pub fn redact_url(url: &str) -> String {
    redact(url, chat_platform(url).is_some())
}

/// The URL with userinfo, query string and every path segment after the
/// first removed (or the only segment, when there is one): for URLs whose
/// path is a credential (chat webhooks, and any URL read from `url_env`).
pub fn redact_url_path(url: &str) -> String {
    redact(url, true)
}

fn redact(url: &str, hide_path: bool) -> String {
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
    out.push_str(&shown_path(uri.path(), hide_path));
    if uri.query().is_some() {
        out.push_str("?<redacted>");
    }
    out
}

/// The path, or with `hide` its first segment and `/<redacted>` for the
/// rest; a path with a single segment is all credential: `/<redacted>`.
fn shown_path(path: &str, hide: bool) -> String {
    if !hide {
        return path.to_string();
    }
    match split_secret_path(path) {
        (Some(first), hidden) if !hidden.is_empty() => format!("/{first}/<redacted>"),
        (None, hidden) if !hidden.is_empty() => "/<redacted>".into(),
        _ => path.to_string(),
    }
}

/// A secret path split into the segment it may show (the first, when
/// another non-empty one follows it) and the segments it hides (every
/// other one, or all of them when there is only one).
fn split_secret_path(path: &str) -> (Option<&str>, Vec<&str>) {
    let rest = path.strip_prefix('/').unwrap_or(path);
    let non_empty = rest.split('/').filter(|s| !s.is_empty()).count();
    match rest.split_once('/') {
        Some((first, more)) if non_empty >= 2 && !first.is_empty() => {
            (Some(first), more.split('/').collect())
        }
        _ if non_empty >= 1 => (None, rest.split('/').collect()),
        _ => (None, Vec::new()),
    }
}

/// The parts of a webhook URL that are credentials, as a receiver could
/// echo them back: the userinfo (whole, and the password, each as written
/// and percent-decoded) and the `Basic` token ureq sends for it;
/// the query (whole, and each value as written and decoded); and, when
/// `path_is_secret` (a `url_env` or per-call URL) or the host is a chat
/// platform, the whole URL and every path segment it does not show (after
/// the first, or the only one: see [`redact_url_path`]).
pub fn credentials(url: &str, path_is_secret: bool) -> Vec<String> {
    use base64::Engine;
    let decoded = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    let mut out = Vec::new();
    let both = |out: &mut Vec<String>, s: &str| {
        out.push(s.to_string());
        out.push(decoded(s));
        out.push(
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned(),
        );
    };
    let hide_path = path_is_secret || chat_platform(url).is_some();
    if hide_path {
        out.push(url.to_string());
    }
    let Ok(uri) = url.parse::<ureq::http::Uri>() else {
        return out;
    };
    if let Some((userinfo, _)) = uri.authority().and_then(|a| a.as_str().rsplit_once('@')) {
        // As ureq splits it: the password follows the last `:`.
        let (user, password) = userinfo.rsplit_once(':').unwrap_or((userinfo, ""));
        // The user name alone is no secret (and often a common word).
        for part in [userinfo, password] {
            both(&mut out, part);
        }
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        out.push(format!("Basic {token}"));
        out.push(token);
    }
    if let Some(query) = uri.query() {
        both(&mut out, query);
        for pair in query.split('&') {
            both(
                &mut out,
                pair.split_once('=').map_or(pair, |(_, value)| value),
            );
        }
    }
    if hide_path {
        for segment in split_secret_path(uri.path()).1 {
            both(&mut out, segment);
        }
    }
    out.retain(|s| !s.is_empty());
    out.sort();
    out.dedup();
    out
}

/// What a message may show of a URL that does not parse: at most
/// `scheme://host`, with `/<redacted>` when more follows (its path may be
/// a credential, like a chat webhook's), and only the scheme when an `@`
/// sits past the first `?` or `#` (the host cannot be told from a password
/// there). Text without a scheme is shown whole only when it has no `/`,
/// `@`, `?` or `#`: nothing that could be a path, userinfo or query.
fn redact_unparsed_url(url: &str) -> String {
    let is_scheme = |s: &str| {
        s.starts_with(|c: char| c.is_ascii_alphabetic())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    };
    let Some((scheme, rest)) = url.split_once("://").filter(|(s, _)| is_scheme(s)) else {
        if !url.contains(['/', '@', '?', '#']) {
            return url.escape_debug().to_string();
        }
        return "<unparseable URL, not shown: it may hold credentials>".into();
    };
    let end = rest.find(['?', '#']).unwrap_or(rest.len());
    if rest[end..].contains('@') {
        return format!("{scheme}://<not shown>");
    }
    let authority = &rest[..end];
    let after_userinfo = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = after_userinfo.split('/').next().unwrap_or_default();
    let host_end = authority.len() - after_userinfo.len() + host.len();
    let more = if rest.len() > host_end {
        "/<redacted>"
    } else {
        ""
    };
    format!("{scheme}://{}{more}", host.escape_debug())
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host_ip(host).is_ok_and(|ip| ip.is_some_and(|ip| ip.is_loopback()))
}

/// The address a URL host (as `http::Uri::host` gives it) is written as:
/// `Ok(None)` for a name. An IPv6 literal is in brackets. A host whose
/// last label is a number is an IPv4 address as the WHATWG URL standard
/// parses one, which is how browsers read it and, but for details that
/// change no address (a trailing dot), how `inet_aton` and so the system
/// resolver do: one to four parts, each decimal, octal (`0` first) or hex
/// (`0x` first), the last filling the bytes left, so `2852039166`,
/// `0xa9fea9fe`, `0251.0376.0251.0376` and `169.254.43518` are all
/// 169.254.169.254 and `127.1` is 127.0.0.1. Such a host that is no
/// address (`1.2.3.256`, `1.2.3.4.5`) is an error: a resolver would not
/// look it up as a name either; the error does not show the host (it may
/// be part of a secret URL).
pub fn host_ip(host: &str) -> Result<Option<IpAddr>, String> {
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return match inner.parse::<Ipv6Addr>() {
            Ok(ip) => Ok(Some(IpAddr::V6(ip))),
            Err(_) => Err(format!(
                "`[{}]` is not an IPv6 address",
                inner.escape_debug()
            )),
        };
    }
    if !ends_in_a_number(host) {
        return Ok(None);
    }
    match parse_ipv4(host) {
        Some(ip) => Ok(Some(IpAddr::V4(ip))),
        None => Err(
            "its host ends in a number but is not an IPv4 address (four numbers from 0 to 255, like 192.0.2.10)"
                .into(),
        ),
    }
}

/// The host's dot-separated parts, without the empty one a trailing dot
/// leaves (WHATWG: a validation error, not a failure).
fn ipv4_parts(host: &str) -> Vec<&str> {
    let mut parts: Vec<&str> = host.split('.').collect();
    if parts.len() > 1 && parts.last() == Some(&"") {
        parts.pop();
    }
    parts
}

/// WHATWG "ends in a number": the last part is digits, or an IPv4 number
/// in any base (`0x1f`).
fn ends_in_a_number(host: &str) -> bool {
    let parts = ipv4_parts(host);
    let last = parts.last().copied().unwrap_or_default();
    (!last.is_empty() && last.bytes().all(|b| b.is_ascii_digit())) || ipv4_number(last).is_some()
}

/// WHATWG "IPv4 parser": `None` for failure.
fn parse_ipv4(host: &str) -> Option<Ipv4Addr> {
    let parts = ipv4_parts(host);
    if parts.len() > 4 {
        return None;
    }
    let numbers = parts
        .iter()
        .map(|p| ipv4_number(p))
        .collect::<Option<Vec<u64>>>()?;
    let (last, first) = numbers.split_last()?;
    if first.iter().any(|&n| n > 255) || *last >= 256u64.pow(5 - numbers.len() as u32) {
        return None;
    }
    let high = first
        .iter()
        .enumerate()
        .map(|(i, &n)| n << (8 * (3 - i)))
        .sum::<u64>();
    u32::try_from(high + last).ok().map(Ipv4Addr::from)
}

/// WHATWG "IPv4 number parser": decimal, octal after a `0`, hex after
/// `0x`; an empty number after its prefix is 0. `None` for failure (and
/// for a number too large for any address).
fn ipv4_number(part: &str) -> Option<u64> {
    if part.is_empty() {
        return None;
    }
    let (digits, radix) = match part.get(..2) {
        Some("0x" | "0X") => (&part[2..], 16),
        _ if part.len() >= 2 && part.starts_with('0') => (&part[1..], 8),
        _ => (part, 10),
    };
    if digits.is_empty() {
        return Some(0);
    }
    if !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    // Digits only, so an error is an overflow: larger than any address.
    u64::from_str_radix(digits, radix).ok()
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
    fn every_ipv4_literal_form_is_read_as_its_address() {
        let ip = |host: &str| host_ip(host).unwrap().map(|ip| ip.to_string());
        for host in [
            "2852039166",
            "0xa9fea9fe",
            "0XA9FEA9FE",
            "0251.0376.0251.0376",
            "169.254.43518",
            "169.0xfe.0xa9fe",
            "0xa9.0376.169.254",
            "169.254.169.254",
            "169.254.169.254.",
        ] {
            assert_eq!(ip(host).as_deref(), Some("169.254.169.254"), "{host}");
        }
        assert_eq!(ip("127.1").as_deref(), Some("127.0.0.1"));
        assert_eq!(ip("0").as_deref(), Some("0.0.0.0"));
        assert_eq!(ip("0x").as_deref(), Some("0.0.0.0"));
        assert_eq!(ip("10.0x").as_deref(), Some("10.0.0.0"));
        assert_eq!(ip("[::1]").as_deref(), Some("::1"));
        for name in [
            "example.com",
            "1.2.3.4.example",
            "0x.example",
            "a1",
            "1a",
            "x.0xg",
            "localhost",
        ] {
            assert_eq!(host_ip(name), Ok(None), "{name} is a name");
        }
        for bad in [
            "1.2.3.256",
            "256.1.1.1",
            "1.2.3.4.5",
            "4294967296",
            "1.16777216",
            "1..2",
            "08.1.1.1",
            "0x1g.1",
            "99999999999999999999999",
            "[::g]",
        ] {
            assert!(host_ip(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn shorthand_literals_are_checked_where_they_point() {
        assert_eq!(check_url("http://127.1:8080/h"), Ok(()), "loopback");
        assert_eq!(check_url("http://2130706433/h"), Ok(()), "loopback");
        assert!(check_url("http://2852039166/h").is_err(), "not loopback");
        let err = check_url("https://1.2.3.256/h").unwrap_err();
        assert!(err.contains("not an IPv4 address"), "{err}");
        let err = check_secret_url("https://user:pw@1.2.3.256/secret").unwrap_err();
        assert!(
            !err.contains("1.2.3.256") && !err.contains("secret"),
            "{err}"
        );
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
    fn ports_a_connection_cannot_use_are_refused_without_showing_a_password() {
        let err = check_url("https://user:p/w@host/h").unwrap_err();
        assert!(
            err.starts_with("`https://<not shown>` has a port that is not a number"),
            "{err}"
        );
        assert!(!err.contains("user:") && !err.contains("p/w"), "{err}");
        assert!(check_secret_url("https://user:p/w@host/h").is_err());
        let err = check_url("http://127.0.0.1:99999/").unwrap_err();
        assert_eq!(
            err,
            "`http://127.0.0.1/` has port 99999: a port is a number from 1 to 65535"
        );
        assert!(check_url("https://h:0/").is_err());
        assert!(check_url("https://[::1]:70000/").is_err());
        assert!(check_secret_url("http://127.0.0.1:99999/").is_err());
        let err = check_url("https://user:12/345678@host/h").unwrap_err();
        assert!(
            !err.contains("12"),
            "a numeric password stays hidden: {err}"
        );
        for ok in [
            "https://user:p%2Fw@host/h",
            "https://host:/h",
            "https://host:443/h",
            "https://host:8443/@user/hook",
            "http://[::1]:8080/h",
            "https://acme.webhook.office.com/webhookb2/a@b/IncomingWebhook/c/d",
        ] {
            assert_eq!(check_url(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn credentials_are_every_form_a_receiver_could_echo() {
        let got = credentials(
            "https://us%40r:p%2Fss@h.example/a/b?token=t%2B1&sig=xyz&flag",
            false,
        );
        for want in [
            "us%40r:p%2Fss",
            "us@r:p/ss",
            "p%2Fss",
            "p/ss",
            "Basic dXMlNDByOnAlMkZzcw==",
            "dXMlNDByOnAlMkZzcw==",
            "token=t%2B1&sig=xyz&flag",
            "t%2B1",
            "t+1",
            "xyz",
            "flag",
        ] {
            assert!(
                got.iter().any(|g| g == want),
                "{want:?} missing from {got:?}"
            );
        }
        assert!(
            !got.iter()
                .any(|g| g.contains("h.example") || g == "a" || g == "us@r"),
            "{got:?}"
        );
        let slack = credentials("https://hooks.slack.com/services/T0/B0/XYZ", false);
        for want in [
            "T0",
            "B0",
            "XYZ",
            "https://hooks.slack.com/services/T0/B0/XYZ",
        ] {
            assert!(
                slack.iter().any(|g| g == want),
                "{want:?} missing from {slack:?}"
            );
        }
        assert!(!slack.iter().any(|g| g == "services"));
        let secret = credentials("http://127.0.0.1:9/hooks/KEY-1", true);
        assert!(secret.iter().any(|g| g == "KEY-1"), "{secret:?}");
        assert!(credentials("https://example.com/a/b", false).is_empty());
    }

    #[test]
    fn chat_hosts_are_known() {
        for (url, platform) in [
            ("https://hooks.slack.com/services/T0/B0/x", Some("Slack")),
            ("https://HOOKS.slack.com./services/T0/B0/x", Some("Slack")),
            ("https://discord.com/api/webhooks/1/tok", Some("Discord")),
            (
                "https://canary.discord.com/api/webhooks/1/tok",
                Some("Discord"),
            ),
            ("https://discordapp.com/api/webhooks/1/tok", Some("Discord")),
            (
                "https://acme.webhook.office.com/webhookb2/a@b/IncomingWebhook/c/d",
                Some("Teams"),
            ),
            (
                "https://prod-01.westus.logic.azure.com:443/workflows/x/triggers/manual/paths/invoke?sig=s",
                Some("Teams"),
            ),
            ("https://notdiscord.com/api/webhooks/1/tok", None),
            ("https://slack.com/api/chat.postMessage", None),
            ("https://mm.example.com/hooks/key", None),
            ("not a url", None),
        ] {
            assert_eq!(chat_platform(url), platform, "{url}");
        }
    }

    #[test]
    fn chat_webhook_paths_are_redacted_after_the_first_segment() {
        assert_eq!(
            redact_url("https://hooks.slack.com/services/T000/B000/XXXX"),
            "https://hooks.slack.com/services/<redacted>"
        );
        assert_eq!(
            redact_url("https://discord.com/api/webhooks/123/token-abc"),
            "https://discord.com/api/<redacted>"
        );
        assert_eq!(
            redact_url(
                "https://prod-01.westus.logic.azure.com:443/workflows/id/triggers/manual/paths/invoke?api-version=1&sig=s"
            ),
            "https://prod-01.westus.logic.azure.com:443/workflows/<redacted>?<redacted>"
        );
        assert_eq!(
            redact_url("https://example.com/a/b/c"),
            "https://example.com/a/b/c",
            "other hosts keep their path"
        );
        assert_eq!(
            redact_url_path("http://127.0.0.1:9/hooks/secret-key"),
            "http://127.0.0.1:9/hooks/<redacted>"
        );
    }

    #[test]
    fn a_secret_path_of_one_segment_is_hidden_whole() {
        for (url, shown) in [
            (
                "http://127.0.0.1:18181/SEGMENTSECRET42",
                "http://127.0.0.1:18181/<redacted>",
            ),
            ("https://h/one/", "https://h/<redacted>"),
            ("https://h//one", "https://h/<redacted>"),
            ("https://h/one?k=v", "https://h/<redacted>?<redacted>"),
            ("https://h/", "https://h/"),
            ("https://h", "https://h/"),
        ] {
            assert_eq!(redact_url_path(url), shown, "{url}");
        }
        assert_eq!(
            redact_url("https://hooks.slack.com/SLACKSECRET9"),
            "https://hooks.slack.com/<redacted>"
        );
        assert_eq!(
            redact_url("https://example.com/one"),
            "https://example.com/one"
        );
        let one = credentials("http://127.0.0.1:18181/SEGMENT%2DSECRET42", true);
        for want in ["SEGMENT%2DSECRET42", "SEGMENT-SECRET42"] {
            assert!(
                one.iter().any(|g| g == want),
                "{want:?} missing from {one:?}"
            );
        }
        let per_call = credentials("https://h.example/one/", true);
        assert!(per_call.iter().any(|g| g == "one"), "{per_call:?}");
        let two = credentials("http://127.0.0.1:9/hooks/KEY-1", true);
        assert!(
            !two.iter().any(|g| g == "hooks"),
            "a shown first segment is no credential: {two:?}"
        );
        assert!(credentials("https://example.com/one", false).is_empty());
    }

    #[test]
    fn secret_url_errors_show_none_of_it() {
        for url in [
            "http://10.0.0.1/hooks/secret",
            "ftp://host/secret",
            "https://ho st/secret",
            "/secret",
        ] {
            let err = check_secret_url(url).unwrap_err();
            assert!(!err.contains("secret"), "{url}: {err}");
        }
        assert_eq!(check_secret_url("https://h/secret"), Ok(()));
        assert_eq!(check_secret_url("http://127.0.0.1:1/secret"), Ok(()));
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
                "`https://ho st/<redacted>` is not a valid URL",
            ),
            ("https://user:pw@", "`https://` is not a valid URL"),
            (
                "https://user:pw@/x",
                "`https:///<redacted>` is not a valid URL",
            ),
            (
                "https://user:p/w@bad host/x",
                "`https://bad host/<redacted>` is not a valid URL",
            ),
            (
                "https://host /x?token=abc",
                "`https://host /<redacted>` is not a valid URL",
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
        // Nothing to hide: unparseable text without a scheme, `/`, `@`, `?` or `#` is shown whole.
        let err = check_url("not a url").unwrap_err();
        assert!(err.starts_with("`not a url` is not a valid URL"), "{err}");
        let err = check_url("https://h\n/x").unwrap_err();
        assert!(
            err.starts_with("`https://h\\n/<redacted>` is not a valid URL"),
            "{err}"
        );
        // A path may be the credential (a chat webhook's): never shown.
        for (url, want) in [
            (
                "https://hooks.slack.com/services/T0/B0/SLACKLIT10 x",
                "`https://hooks.slack.com/<redacted>` is not a valid URL",
            ),
            (
                "hooks.slack.com/services/T0/B0/SLACKLIT10 x",
                "`<unparseable URL, not shown: it may hold credentials>` is not",
            ),
        ] {
            let err = check_url(url).unwrap_err();
            assert!(err.starts_with(want), "{url}: {err}");
            assert!(!err.contains("SLACKLIT10") && !err.contains("T0"), "{err}");
        }
    }
}
