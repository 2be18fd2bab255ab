//! How a Redis URL is shown: without its credentials.
//!
//! What authenticates, as the redis crate reads a URL (redis 1.8,
//! `connection.rs`): on `redis://`, `rediss://`, `valkey://`, `valkeys://`
//! (and so on `redis+sentinel://`, `redis+cluster://`, whose credentials are
//! the first host's) the user and password of `user:password@host`,
//! percent-decoded, and nothing of the query; on `unix://` and `redis+unix://`
//! the query's `user` and `pass` (form-decoded, names included: `?p%61ss=`
//! is `pass`) and nothing of a `user:password@`. The redaction hides more
//! than that: every query parameter whose name looks like a credential
//! (`password`, `username`, `sentinel_password`, `token`...), whether or not
//! it authenticates, and whatever a malformed URL may hold of a password.

/// The hidden part of a URL.
const HIDDEN: &str = "***";

/// Whether a query parameter's name (form-decoded, any case) names a
/// credential: what authenticates (`user`, `pass`) and what looks like it.
pub(super) fn is_secret_name(raw: &str) -> bool {
    let name = ::url::form_urlencoded::parse(raw.as_bytes())
        .next()
        .map(|(name, _)| name.to_lowercase())
        .unwrap_or_default();
    ["user", "pass", "pwd", "secret", "token", "auth", "cred"]
        .iter()
        .any(|part| name.contains(part))
}

/// Whether every port of a host list (`h:1,[::1]:2`) is a number or absent.
fn ports_are_numbers(authority: &str) -> bool {
    authority
        .split(',')
        .all(|host| port_of(host).1.bytes().all(|b| b.is_ascii_digit()))
}

/// `host` split before its port (`"h:1"` is `("h:", "1")`; IPv6 in brackets).
fn port_of(host: &str) -> (&str, &str) {
    let after_brackets = match host.starts_with('[') {
        true => host.find(']').map_or(host.len(), |end| end + 1),
        false => 0,
    };
    match host[after_brackets..].rfind(':') {
        Some(colon) => host.split_at(after_brackets + colon + 1),
        None => (host, ""),
    }
}

/// A host list with every port that is not a number hidden: `redis://user:pw`
/// (the `@host` forgotten) reads as host `user`, port `pw`.
fn mask_ports(authority: &str) -> String {
    authority
        .split(',')
        .map(|host| match port_of(host) {
            (head, port) if port.bytes().all(|b| b.is_ascii_digit()) => format!("{head}{port}"),
            (head, _) => format!("{head}{HIDDEN}"),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// `text` (host, path and query) with the value of every credential
/// parameter hidden. Parameters are split on `&` and `?` (a `?` forgotten,
/// an `&` written for the `?`); a value runs on over the following pieces
/// without `=` (an `&` or `?` left unencoded in a password).
pub(super) fn mask_parameters(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut hiding = false;
    let mut start = 0;
    let mut separator = "";
    for (at, byte) in text.bytes().enumerate().chain([(text.len(), b'&')]) {
        if at < text.len() && byte != b'&' && byte != b'?' {
            continue;
        }
        let piece = &text[start..at];
        match piece.split_once('=') {
            Some((name, _)) => {
                // A path's last segment only: `/run/user/1000/a=b` names `a`.
                hiding = is_secret_name(name.rsplit('/').next().unwrap_or_default());
                out.push_str(separator);
                match hiding {
                    true => out.extend([name, "=", HIDDEN]),
                    false => out.push_str(piece),
                }
            }
            None if hiding => {}
            None => out.extend([separator, piece]),
        }
        separator = text.get(at..at + 1).unwrap_or_default();
        start = at + 1;
    }
    out
}

/// Where the user part of `rest` (a URL after its `scheme://`) ends: its
/// last `@`, wherever it is (a password may hold `/`, `?` or `#` unencoded),
/// unless that `@` is plainly in the value of a query parameter
/// (`unix:///r.sock?user=web&pass=a@b`).
fn user_part_end(rest: &str) -> Option<usize> {
    let at = rest.rfind('@')?;
    let query = rest.find('?').filter(|&query| query < at);
    let Some(query) = query else {
        return Some(at);
    };
    let before = &rest[..query];
    let authority = before.split('/').next().unwrap_or_default();
    let piece_start = rest[..at].rfind(['&', '?']).map_or(0, |sep| sep + 1);
    let in_a_value = rest[piece_start..at].contains('=');
    match before.contains('/') && ports_are_numbers(authority) && in_a_value {
        true => None,
        false => Some(at),
    }
}

/// `url` without its credentials, for logs, reprs and error messages: the
/// user part becomes `***@`, the value of every credential parameter
/// `***` (`?pass=***`), a port that is not a number `***`, a fragment
/// other than `#insecure` `#***`. Hosts, paths, the database and the other
/// parameters stay. The project's one redaction (`redact_url` in Python).
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<not a URL>".to_string();
    };
    let mut out = format!("{scheme}://");
    let rest = match user_part_end(rest) {
        Some(at) => {
            out.push_str(HIDDEN);
            out.push('@');
            &rest[at + 1..]
        }
        None => rest,
    };
    let (rest, fragment) = match rest.split_once('#') {
        Some((rest, fragment)) => (rest, Some(fragment)),
        None => (rest, None),
    };
    let shown = mask_parameters(rest);
    let authority_end = shown.find(['/', '?', '&']).unwrap_or(shown.len());
    out.push_str(&mask_ports(&shown[..authority_end]));
    out.push_str(&shown[authority_end..]);
    match fragment {
        Some("insecure") => out.push_str("#insecure"),
        Some(_) => out.extend(["#", HIDDEN]),
        None => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::parse;
    use super::*;

    #[test]
    fn redaction_keeps_what_is_not_a_credential() {
        for (url, shown) in [
            ("redis://user:hunter2@h:1/0", "redis://***@h:1/0"),
            ("redis://:hunter2@h:1/0", "redis://***@h:1/0"),
            ("redis://h:1/0", "redis://h:1/0"),
            ("nonsense", "<not a URL>"),
            ("unix:///r.sock?pass=hunter2", "unix:///r.sock?pass=***"),
            (
                "unix:///r.sock?user=u&pass=hunter2&db=1",
                "unix:///r.sock?user=***&pass=***&db=1",
            ),
            (
                "rediss://:hunter2@h:1/0?protocol=resp3#insecure",
                "rediss://***@h:1/0?protocol=resp3#insecure",
            ),
            (
                "rediss://h/0?ssl_keyfile=/etc/k.pem&ssl_certfile=/etc/c.pem&ssl_password=hunter2",
                "rediss://h/0?ssl_keyfile=/etc/k.pem&ssl_certfile=/etc/c.pem&ssl_password=***",
            ),
            (
                "redis+sentinel://u:hunter2@a:1,[::1]:2/svc/3",
                "redis+sentinel://***@a:1,[::1]:2/svc/3",
            ),
            (
                "unix:///r.sock?user=web&pass=a@b/c&db=2",
                "unix:///r.sock?user=***&pass=***&db=2",
            ),
            ("unix:///r.sock?note=a@b", "unix:///r.sock?note=a@b"),
            ("redis://h:notaport/0", "redis://h:***/0"),
            ("redis://h/0#frag", "redis://h/0#***"),
            (
                "unix:///run/user/1000/a=b.sock?db=1",
                "unix:///run/user/1000/a=b.sock?db=1",
            ),
        ] {
            assert_eq!(redact(url), shown, "{url}");
        }
    }

    /// Every form that may hold a secret, as in tests/test_url_redaction.py:
    /// no piece of the secret (`Zq7`, `s3cret`) survives, and a valid URL
    /// still parses after its redaction has been checked.
    #[test]
    fn no_form_shows_its_secret() {
        let p = "Zq7-requirepass-s3cret";
        let encoded = "Zq7%40odoo%2Fs3cret%26x";
        let raw = "Zq7@odoo/s3cret&x";
        let forms = [
            format!("redis://:{p}@h:6379/0"),
            format!("redis://default:{p}@h:6379/0"),
            format!("redis://odoo:{encoded}@h/0"),
            format!("valkey://:{p}@h/0"),
            format!("unix:///r.sock?pass={p}"),
            format!("unix:///r.sock?user=default&pass={p}&db=1"),
            format!("redis+unix:///r.sock?pass={p}"),
            format!("unix:///r.sock?user=odoo&pass={encoded}"),
            format!("unix:///r.sock?p%61ss={p}"),
            "unix:///r.sock?user=web&pass=Zq7@web/s3cret".to_string(),
            format!("unix:///r.sock?password={p}"),
            format!("unix:///r.sock?username=Zq7-user-s3cret&password={p}"),
            format!("unix:///r.sock?PASS={p}"),
            format!("unix:///r.sock?user=odoo&pass={raw}"),
            format!("unix:///r.sock?user=a@b&pass={p}"),
            "unix:///r.sock?pass=Zq7#s3cret".to_string(),
            format!("redis://h/0?password={p}"),
            format!("redis://h/0?pass={p}"),
            format!("redis://h/0?username=Zq7-s3cret&password={p}"),
            format!("redis://h/0?db=0&sentinel_password={p}"),
            format!("rediss://:{p}@localhost:1/0"),
            format!("rediss://default:{p}@localhost:1/0#insecure"),
            format!("rediss://default:{p}@h/0?protocol=resp3"),
            format!("valkeys://h/0?password={p}"),
            format!("redis+sentinel://default:{p}@a:1,b:2/m/0"),
            format!("redis+sentinel://:{p}@a:1,b:2/mymaster?sentinel_password={p}"),
            format!("rediss+sentinel://:{p}@a/mymaster"),
            format!("redis+cluster://:{p}@a:1,b:2"),
            format!("rediss+cluster://default:{p}@a:1,[::1]:1"),
            format!("redis+cluster://odoo:{encoded}@a"),
            format!("redis+cluster://a:1,b:2?password={p}"),
            format!("redis://default:{p}@h:notaport/0"),
            format!("redis://default:{p}@h/zero"),
            format!("redis://default:{p}@"),
            format!("http://default:{p}@h"),
            format!("REDIS://default:{p}@h/0"),
            format!("default:{p}@h"),
            format!("redis://:{p}"),
            format!("redis://default:{p}/0"),
            format!("redis://odoo:{raw}@h/0"),
            "redis://default:Zq7?s3cret@h/0".to_string(),
            "redis://default:Zq7#s3cret@h/0".to_string(),
            "redis://user:123?s3cret@h/0".to_string(),
            format!("redis+sentinel://default:{p}@a"),
            format!("redis+sentinel://default:{p}@a,,h/s"),
            format!("redis+cluster://default:{p}@a/2"),
            "redis+cluster://a:1#Zq7s3cret".to_string(),
            format!("unix:///r.sock?pass={p}&db=x"),
            format!("unix:///r.sock?pass={p}&protocol=9"),
            format!("unix:///r.sock&pass={p}"),
        ];
        let mut leaks = Vec::new();
        let mut tries = 0;
        for url in &forms {
            let mut outputs = vec![redact(url)];
            if let Err(err) = parse("ormcache_redis_url", url) {
                outputs.push(err);
            }
            for output in outputs {
                tries += 1;
                let lowered = output.to_lowercase();
                if lowered.contains("zq7") || lowered.contains("s3cret") {
                    leaks.push(format!("{url} -> {output}"));
                }
            }
        }
        assert!(tries > forms.len(), "{tries}");
        assert!(
            leaks.is_empty(),
            "{} leaks in {tries} tries: {leaks:#?}",
            leaks.len()
        );
    }
}
