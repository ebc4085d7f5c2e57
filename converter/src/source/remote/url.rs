//! `ssh://[USER@]HOST[:PORT][/PATH]`: where a remote source is.

use crate::error::{Error, Result};
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshUrl {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
    /// The directory on the server to take, absolute (`/` when the URL has none).
    pub path: String,
}

pub const SCHEME: &str = "ssh://";

impl SshUrl {
    pub fn parse(text: &str) -> Result<Self> {
        let bad = |reason: &str| Error::BadSource {
            path: text.into(),
            reason: format!("{reason} (expected ssh://[USER@]HOST[:PORT][/PATH])"),
        };
        let rest = text
            .strip_prefix(SCHEME)
            .ok_or_else(|| bad("not an ssh:// address"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (user, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (host, port) = if let Some(inner) = hostport.strip_prefix('[') {
            // [IPv6]:PORT
            let (host, after) = inner
                .split_once(']')
                .ok_or_else(|| bad("an unclosed `[` in the host"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err(bad("text after the `]` of the host")),
            };
            (host, port)
        } else {
            match hostport.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        let port = port
            .map(|p| {
                p.parse::<u16>()
                    .map_err(|_| bad("the port is not a number"))
            })
            .transpose()?;
        // A leading `-` would reach ssh as an option.
        let plain =
            |s: &str| !s.is_empty() && !s.starts_with('-') && !s.contains(char::is_whitespace);
        if !plain(host) {
            return Err(bad("no host, or a host that starts with `-`"));
        }
        if let Some(u) = user {
            if !plain(u) {
                return Err(bad("an empty user, or one that starts with `-`"));
            }
        }
        if path.contains('\0') || path.split('/').any(|c| c == "..") {
            return Err(bad("a path with `..`"));
        }
        Ok(SshUrl {
            user: user.map(str::to_string),
            host: host.to_string(),
            port,
            path: path.to_string(),
        })
    }

    /// `[USER@]HOST` as ssh takes it.
    pub fn destination(&self) -> String {
        match &self.user {
            Some(u) => format!("{u}@{}", self.host),
            None => self.host.clone(),
        }
    }
}

impl fmt::Display for SshUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}")?;
        if let Some(u) = &self.user {
            write!(f, "{u}@")?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]", self.host)?;
        } else {
            write!(f, "{}", self.host)?;
        }
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        write!(f, "{}", self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_part_is_read() {
        let u = SshUrl::parse("ssh://admin@web01.example:2222/srv/app").unwrap();
        assert_eq!(u.user.as_deref(), Some("admin"));
        assert_eq!(u.host, "web01.example");
        assert_eq!(u.port, Some(2222));
        assert_eq!(u.path, "/srv/app");
        assert_eq!(u.to_string(), "ssh://admin@web01.example:2222/srv/app");
    }

    #[test]
    fn a_bare_host_means_its_root() {
        let u = SshUrl::parse("ssh://web01").unwrap();
        assert_eq!((u.user, u.port, u.path.as_str()), (None, None, "/"));
        let v6 = SshUrl::parse("ssh://[fd00::2]:22/").unwrap();
        assert_eq!(v6.host, "fd00::2");
        assert_eq!(v6.port, Some(22));
    }

    #[test]
    fn hostile_or_broken_addresses_are_refused() {
        for bad in [
            "ssh://-oProxyCommand=x/",
            "ssh://@host/",
            "ssh://host:port/",
            "ssh:///",
            "ssh://host/../etc",
            "ssh://[fd00::2/",
        ] {
            assert!(SshUrl::parse(bad).is_err(), "{bad} was accepted");
        }
    }
}
