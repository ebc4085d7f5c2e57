//! Users and groups from the image's own `/etc/passwd` and `/etc/group` (never NSS: a
//! static pid 1 cannot load NSS modules, and the container's files are what count).

use crate::model::fs::{FileSystem, HostRoot};

/// A user resolved for running a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub user: String,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary group ids (the groups listing the user, plus extra ones asked for).
    pub groups: Vec<u32>,
    /// Home directory.
    pub home: String,
    /// Login shell.
    pub shell: String,
}

/// One line of /etc/passwd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    /// Name.
    pub name: String,
    /// uid.
    pub uid: u32,
    /// gid.
    pub gid: u32,
    /// Home.
    pub home: String,
    /// Shell.
    pub shell: String,
}

/// One line of /etc/group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    /// Name.
    pub name: String,
    /// gid.
    pub gid: u32,
    /// Member user names.
    pub members: Vec<String>,
}

/// Parses /etc/passwd text, skipping comments, NIS (`+`) lines and malformed lines.
pub fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    read_passwd(text).0
}

/// Parses /etc/passwd text: the entries, and the 1-based numbers of the lines whose ids
/// cannot be read. A line with good ids but fewer than seven fields is skipped silently.
pub fn read_passwd(text: &str) -> (Vec<PasswdEntry>, Vec<usize>) {
    let mut entries = Vec::new();
    let mut malformed = Vec::new();
    for (n, l) in text.lines().enumerate() {
        if l.trim().is_empty() || l.starts_with('#') || l.starts_with('+') {
            continue;
        }
        let f: Vec<&str> = l.split(':').collect();
        let (Some(uid), Some(gid)) = (
            f.get(2).and_then(|v| v.parse().ok()),
            f.get(3).and_then(|v| v.parse().ok()),
        ) else {
            malformed.push(n + 1);
            continue;
        };
        if f.len() < 7 {
            continue;
        }
        entries.push(PasswdEntry {
            name: f[0].into(),
            uid,
            gid,
            home: f[5].into(),
            shell: f[6].into(),
        });
    }
    (entries, malformed)
}

/// Parses /etc/group text, skipping malformed lines.
pub fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('+'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 4 {
                return None;
            }
            let members = f[3]
                .split(',')
                .filter(|m| !m.is_empty())
                .map(str::to_string)
                .collect();
            Some(GroupEntry {
                name: f[0].into(),
                gid: f[2].parse().ok()?,
                members,
            })
        })
        .collect()
}

/// The user and group databases of a root.
#[derive(Debug, Clone, Default)]
pub struct Database {
    /// /etc/passwd entries.
    pub passwd: Vec<PasswdEntry>,
    /// /etc/group entries.
    pub group: Vec<GroupEntry>,
}

impl Database {
    /// Reads `/etc/passwd` and `/etc/group` of the running system.
    pub fn load() -> Database {
        Database::read(&HostRoot::new("/"))
    }

    /// Reads `/etc/passwd` and `/etc/group` of a root (paths resolved inside it); a
    /// missing file is an empty database.
    pub fn read(fs: &dyn FileSystem) -> Database {
        Database {
            passwd: parse_passwd(&fs.read_text("/etc/passwd").unwrap_or_default()),
            group: parse_group(&fs.read_text("/etc/group").unwrap_or_default()),
        }
    }

    /// The user named `name`.
    pub fn user(&self, name: &str) -> Option<&PasswdEntry> {
        self.passwd.iter().find(|p| p.name == name)
    }

    /// The group named `name`.
    pub fn group(&self, name: &str) -> Option<&GroupEntry> {
        self.group.iter().find(|g| g.name == name)
    }

    /// Resolves `User=`, `Group=` and `SupplementaryGroups=` (names or numbers). Without a
    /// user, root. An error names what could not be found.
    pub fn credentials(
        &self,
        user: Option<&str>,
        group: Option<&str>,
        extra: &[String],
    ) -> Result<Credentials, UnknownId> {
        let user = user.unwrap_or("root");
        let pw = match self.passwd.iter().find(|p| p.name == user) {
            Some(p) => p.clone(),
            None => match user.parse::<u32>() {
                Ok(uid) => self
                    .passwd
                    .iter()
                    .find(|p| p.uid == uid)
                    .cloned()
                    .unwrap_or(PasswdEntry {
                        name: user.into(),
                        uid,
                        gid: uid,
                        home: "/".into(),
                        shell: "/bin/sh".into(),
                    }),
                Err(_) => return Err(UnknownId::User(user.into())),
            },
        };
        let gid = match group {
            None => pw.gid,
            Some(g) => self.gid(g)?,
        };
        let mut groups: Vec<u32> = self
            .group
            .iter()
            .filter(|g| g.members.contains(&pw.name))
            .map(|g| g.gid)
            .collect();
        for g in extra {
            groups.push(self.gid(g)?);
        }
        if !groups.contains(&gid) {
            groups.insert(0, gid);
        }
        groups.dedup();
        Ok(Credentials {
            user: pw.name,
            uid: pw.uid,
            gid,
            groups,
            home: pw.home,
            shell: pw.shell,
        })
    }

    fn gid(&self, g: &str) -> Result<u32, UnknownId> {
        match self.group.iter().find(|e| e.name == g) {
            Some(e) => Ok(e.gid),
            None => g.parse().map_err(|_| UnknownId::Group(g.into())),
        }
    }
}

/// A `User=` or `Group=` that is neither a name in the image's files nor a number.
#[derive(Debug, thiserror::Error)]
pub enum UnknownId {
    #[error("user {0:?} is not in /etc/passwd")]
    User(String),
    #[error("group {0:?} is not in /etc/group")]
    Group(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_users_and_groups() {
        let db = Database {
            passwd: parse_passwd("root:x:0:0:root:/root:/bin/bash\nwww-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\nbroken\n"),
            group: parse_group("root:x:0:\nwww-data:x:33:\nadm:x:4:www-data,syslog\n"),
        };
        let c = db
            .credentials(Some("www-data"), None, &["adm".into()])
            .unwrap();
        assert_eq!((c.uid, c.gid, c.home.as_str()), (33, 33, "/var/www"));
        assert_eq!(c.groups, [33, 4]);
        assert_eq!(db.credentials(None, None, &[]).unwrap().uid, 0);
        assert_eq!(db.credentials(Some("1234"), Some("4"), &[]).unwrap().gid, 4);
        assert!(db
            .credentials(Some("nobody-here"), None, &[])
            .unwrap_err()
            .to_string()
            .contains("nobody-here"));
        assert!(db.credentials(Some("root"), Some("nogroup"), &[]).is_err());
    }
}
