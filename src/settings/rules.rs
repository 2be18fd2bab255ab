//! How each kind of option reads its raw string, with the one sentence
//! that names it when the value is bad. `label` is how the sentence names
//! the option: its name, or the command-line flag that gave the value.
//! Unset (`None`) is the default: what `parse` returns for it is the
//! option's default everywhere, Python included.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use pyo3::prelude::*;
use pyo3::IntoPyObjectExt;

use super::options::{
    Choice, Names, Networks, Prefix, Seconds, Secret, Switch, Text, Token, Url, Whole,
};
use crate::redis::url;

/// Python's repr of a string, as the operator wrote it.
pub fn quoted(raw: &str) -> String {
    format!("'{}'", raw.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// One option of a known kind, read from its raw string.
pub trait Spec {
    type Value;
    /// What Python calls this kind of option (`OptionSpec.kind`).
    const KIND: &'static str;
    fn name(&self) -> &'static str;
    fn parse_as(&self, label: &str, raw: Option<&str>) -> Result<Self::Value, String>;

    fn parse(&self, raw: Option<&str>) -> Result<Self::Value, String> {
        self.parse_as(self.name(), raw)
    }

    /// Numbers only: (above, at most] for seconds, [minimum, maximum] for
    /// whole numbers.
    fn bounds(&self) -> Option<(f64, f64)> {
        None
    }
}

/// Any option, as Python sees it (`OptionSpec`).
pub trait Rule: Sync {
    fn name(&self) -> &'static str;
    fn kind(&self) -> &'static str;
    fn bounds(&self) -> Option<(f64, f64)>;
    /// The value when unset, as Python sees it.
    fn default_py(&self, py: Python<'_>) -> PyResult<Py<PyAny>>;
    fn parse_py(&self, py: Python<'_>, label: &str, raw: Option<&str>) -> PyResult<Py<PyAny>>;
}

impl<T> Rule for T
where
    T: Spec + Sync,
    T::Value: for<'py> IntoPyObject<'py>,
{
    fn name(&self) -> &'static str {
        Spec::name(self)
    }

    fn kind(&self) -> &'static str {
        T::KIND
    }

    fn bounds(&self) -> Option<(f64, f64)> {
        Spec::bounds(self)
    }

    fn default_py(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.parse_py(py, Spec::name(self), None)
    }

    fn parse_py(&self, py: Python<'_>, label: &str, raw: Option<&str>) -> PyResult<Py<PyAny>> {
        let value = self
            .parse_as(label, raw)
            .map_err(crate::errors::ConfigError::new_err)?;
        value.into_py_any(py)
    }
}

impl Spec for Url {
    type Value = Option<String>;
    const KIND: &'static str = "url";
    fn name(&self) -> &'static str {
        self.name
    }
    fn parse_as(&self, label: &str, raw: Option<&str>) -> Result<Option<String>, String> {
        raw.map(|raw| url::parse(label, raw).map(|_| raw.to_string()))
            .transpose()
    }
}

impl Spec for Text {
    type Value = Option<String>;
    const KIND: &'static str = "text";
    fn name(&self) -> &'static str {
        self.name
    }
    fn parse_as(&self, _label: &str, raw: Option<&str>) -> Result<Option<String>, String> {
        Ok(raw.map(str::to_string))
    }
}

impl Spec for Prefix {
    type Value = String;
    const KIND: &'static str = "prefix";
    fn name(&self) -> &'static str {
        self.name
    }
    fn parse_as(&self, label: &str, raw: Option<&str>) -> Result<String, String> {
        let prefix = raw.unwrap_or(self.default);
        let spaced = prefix.contains(char::is_whitespace);
        match self.max_chars {
            Some(max) if spaced || prefix.chars().count() > max => Err(format!(
                "{label} must be at most {max} characters without spaces, got {}.",
                quoted(prefix)
            )),
            None if spaced => Err(format!(
                "{label} must not contain spaces, got {}.",
                quoted(prefix)
            )),
            _ => Ok(prefix.to_string()),
        }
    }
}

impl Spec for Names {
    type Value = Vec<String>;
    const KIND: &'static str = "names";
    fn name(&self) -> &'static str {
        self.name
    }
    fn parse_as(&self, label: &str, raw: Option<&str>) -> Result<Vec<String>, String> {
        let Some(raw) = raw else {
            return Ok(self.default.iter().map(|name| name.to_string()).collect());
        };
        let names: Vec<String> = raw
            .split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .map(str::to_string)
            .collect();
        if names.iter().any(|name| name.contains(char::is_whitespace)) {
            return Err(format!(
                "{label} must be a comma-separated list of names, got {}.",
                quoted(raw)
            ));
        }
        Ok(names)
    }
}

impl Spec for Seconds {
    type Value = f64;
    const KIND: &'static str = "seconds";
    fn name(&self) -> &'static str {
        self.name
    }
    fn bounds(&self) -> Option<(f64, f64)> {
        Some((self.above, self.at_most))
    }
    fn parse_as(&self, label: &str, raw: Option<&str>) -> Result<f64, String> {
        let Some(raw) = raw else {
            return Ok(self.default);
        };
        let value: f64 = raw
            .trim()
            .parse()
            .map_err(|_| format!("{label} must be a number of seconds, got {}.", quoted(raw)))?;
        if !value.is_finite() || value <= self.above || value > self.at_most {
            return Err(format!(
                "{label} must be a number of seconds above {} and at most {}, got {}.",
                self.above,
                self.at_most,
                quoted(raw)
            ));
        }
        Ok(value)
    }
}

impl Spec for Whole {
    type Value = u64;
    const KIND: &'static str = "whole";
    fn name(&self) -> &'static str {
        self.name
    }
    fn bounds(&self) -> Option<(f64, f64)> {
        Some((self.minimum as f64, self.maximum as f64))
    }
    fn parse_as(&self, label: &str, raw: Option<&str>) -> Result<u64, String> {
        let Some(raw) = raw else {
            return Ok(self.default);
        };
        let value: i128 = raw
            .trim()
            .parse()
            .map_err(|_| format!("{label} must be a whole number, got {}.", quoted(raw)))?;
        if value < self.minimum as i128 || value > self.maximum as i128 {
            return Err(format!(
                "{label} must be between {} and {}, got {}.",
                self.minimum,
                self.maximum,
                quoted(raw)
            ));
        }
        Ok(value as u64)
    }
}

impl Spec for Switch {
    type Value = bool;
    const KIND: &'static str = "switch";
    fn name(&self) -> &'static str {
        self.name
    }
    fn parse_as(&self, label: &str, raw: Option<&str>) -> Result<bool, String> {
        let Some(raw) = raw else {
            return Ok(self.default);
        };
        match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err(format!(
                "{label} must be True or False, got {}.",
                quoted(raw)
            )),
        }
    }
}

impl Spec for Choice {
    type Value = String;
    const KIND: &'static str = "choice";
    fn name(&self) -> &'static str {
        self.name
    }
    fn parse_as(&self, label: &str, raw: Option<&str>) -> Result<String, String> {
        let word = raw.unwrap_or(self.default).to_lowercase();
        if let Some(spellings) = self.choices.iter().find(|s| s.contains(&word.as_str())) {
            return Ok(spellings[0].to_string());
        }
        let words: Vec<String> = self.choices.iter().map(|s| quoted(s[0])).collect();
        Err(format!(
            "{label} must be {}, got {}.",
            words.join(" or "),
            quoted(&word)
        ))
    }
}

impl Spec for Secret {
    type Value = Option<String>;
    const KIND: &'static str = "secret";
    fn name(&self) -> &'static str {
        self.name
    }
    fn parse_as(&self, label: &str, raw: Option<&str>) -> Result<Option<String>, String> {
        let Some(raw) = raw else {
            return Ok(None);
        };
        // The value itself is never repeated: it is a secret.
        let length = raw.chars().count();
        if length < self.min_chars {
            return Err(format!(
                "{label} must be at least {} characters \
                 (e.g. the output of 'openssl rand -hex 32'), got {length}.",
                self.min_chars
            ));
        }
        Ok(Some(raw.to_string()))
    }
}

/// Python's `str.isspace`: Unicode whitespace and the four ASCII
/// separators (file, group, record, unit).
fn python_space(c: char) -> bool {
    c.is_whitespace() || ('\x1c'..='\x1f').contains(&c)
}

impl Spec for Token {
    type Value = Option<String>;
    const KIND: &'static str = "token";
    fn name(&self) -> &'static str {
        self.name
    }
    fn parse_as(&self, label: &str, raw: Option<&str>) -> Result<Option<String>, String> {
        let Some(raw) = raw.filter(|raw| !raw.is_empty()) else {
            return Ok(None);
        };
        // The value itself is never repeated: it is a secret.
        let length = raw.chars().count();
        if length < self.min_chars || raw.chars().any(python_space) {
            return Err(format!(
                "{label} must be at least {} characters without spaces (got {length} characters).",
                self.min_chars
            ));
        }
        Ok(Some(raw.to_string()))
    }
}

impl Spec for Networks {
    /// Each network as `address/prefix length`, host bits cleared.
    type Value = Vec<String>;
    const KIND: &'static str = "networks";
    fn name(&self) -> &'static str {
        self.name
    }
    fn parse_as(&self, label: &str, raw: Option<&str>) -> Result<Vec<String>, String> {
        let Some(raw) = raw else {
            return Ok(Vec::new());
        };
        raw.split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .map(|part| {
                network(part).ok_or_else(|| {
                    format!(
                        "{label} must be a comma-separated list of IP addresses or networks \
                         (such as 127.0.0.1, 10.0.0.0/8), got {}.",
                        quoted(raw)
                    )
                })
            })
            .collect()
    }
}

/// An address or a network as Python's `ipaddress.ip_network(text,
/// strict=False)` reads one: `address[/prefix]`, the prefix a length or,
/// for IPv4, a netmask or hostmask; an IPv6 scope (`%eth0`) is allowed and
/// plays no part in matching.
fn network(text: &str) -> Option<String> {
    let mut parts = text.split('/');
    let (address, prefix) = (parts.next()?, parts.next());
    if parts.next().is_some() {
        return None;
    }
    let address = match address.parse::<Ipv4Addr>() {
        Ok(v4) => IpAddr::V4(v4),
        Err(_) => {
            let bare = match address.split_once('%') {
                Some((bare, scope)) if !scope.is_empty() && !scope.contains('%') => bare,
                Some(_) => return None,
                None => address,
            };
            IpAddr::V6(bare.parse::<Ipv6Addr>().ok()?)
        }
    };
    let bits = if address.is_ipv4() { 32 } else { 128 };
    let length = match prefix {
        None => bits,
        Some(digits) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => digits
            .parse::<u32>()
            .ok()
            .filter(|&length| length <= bits)?,
        Some(mask) if address.is_ipv4() => ipv4_mask_length(mask.parse::<Ipv4Addr>().ok()?)?,
        Some(_) => return None,
    };
    Some(match address {
        IpAddr::V4(v4) => {
            let mask = u32::MAX.checked_shl(32 - length).unwrap_or(0);
            format!("{}/{length}", Ipv4Addr::from(u32::from(v4) & mask))
        }
        IpAddr::V6(v6) => {
            let mask = u128::MAX.checked_shl(128 - length).unwrap_or(0);
            format!("{}/{length}", Ipv6Addr::from(u128::from(v6) & mask))
        }
    })
}

/// The prefix length of an IPv4 netmask (`255.0.0.0`) or hostmask
/// (`0.255.255.255`): ones then zeros, or zeros then ones.
fn ipv4_mask_length(mask: Ipv4Addr) -> Option<u32> {
    let bits = u32::from(mask);
    let ones_first = |bits: u32| {
        (bits.leading_ones() + bits.trailing_zeros() == 32).then(|| bits.leading_ones())
    };
    ones_first(bits).or_else(|| ones_first(!bits))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_read_as_python_reads_them() {
        for (text, expected) in [
            ("127.0.0.1", Some("127.0.0.1/32")),
            ("10.1.2.3/8", Some("10.0.0.0/8")),
            ("10.0.0.0/255.0.0.0", Some("10.0.0.0/8")),
            ("10.0.0.0/0.255.255.255", Some("10.0.0.0/8")),
            ("1.2.3.4/08", Some("1.0.0.0/8")),
            ("0.0.0.0/0", Some("0.0.0.0/0")),
            ("::1", Some("::1/128")),
            ("::/0", Some("::/0")),
            ("fe80::1%eth0/64", Some("fe80::/64")),
            ("fe80::1%eth0", Some("fe80::1/128")),
            ("10.0.0.0/33", None),
            ("1.2.3.4/+8", None),
            ("1.2.3.4/", None),
            ("1.2.3.4/8/8", None),
            ("10.0.0.0/255.0.255.0", None),
            ("::/ffff::", None),
            ("1.2.3.4%eth0", None),
            ("fe80::1%", None),
            ("example.com", None),
            ("0/0", None),
            ("010.0.0.1", None),
        ] {
            assert_eq!(network(text).as_deref(), expected, "{text}");
        }
    }

    #[test]
    fn a_secret_is_never_repeated() {
        let token = super::super::options::METRICS_TOKEN;
        let err = token.parse(Some("hunter2 hunter2")).unwrap_err();
        assert!(!err.contains("hunter2") && err.ends_with('.'), "{err}");
        let err = super::super::options::SECRET
            .parse(Some("hunter2"))
            .unwrap_err();
        assert!(!err.contains("hunter2") && err.ends_with('.'), "{err}");
    }
}
