//! Data directories that should become volumes: databases, queues, mail spools. Their
//! content changes while the server runs and outlives any one image.

use super::fs::Root;
use super::size::WalkFacts;
use serde::Serialize;

/// Directories (tree paths) and what they hold.
pub const DATA_DIRS: &[(&str, &str)] = &[
    ("var/lib/mysql", "MySQL / MariaDB databases"),
    ("var/lib/postgresql", "PostgreSQL databases"),
    ("var/lib/pgsql", "PostgreSQL databases"),
    ("var/lib/mongodb", "MongoDB databases"),
    ("var/lib/redis", "Redis data"),
    ("var/lib/elasticsearch", "Elasticsearch indices"),
    ("var/lib/rabbitmq", "RabbitMQ queues"),
    ("var/lib/cassandra", "Cassandra data"),
    ("var/lib/influxdb", "InfluxDB data"),
    ("var/lib/couchdb", "CouchDB databases"),
    ("var/lib/ldap", "LDAP directory"),
    ("var/lib/openldap", "LDAP directory"),
    ("var/lib/jenkins", "Jenkins home"),
    ("var/lib/docker", "Docker images and volumes"),
    ("var/lib/containers", "container storage"),
    ("var/spool/mail", "mail spool"),
    ("var/mail", "mail spool"),
    ("var/vmail", "mail boxes"),
    ("var/spool/postfix", "Postfix queue"),
    ("var/spool/exim4", "Exim queue"),
];

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DataDir {
    pub path: String,
    pub holds: String,
    pub bytes: u64,
    pub entries: u64,
}

/// The data directories that exist and hold something. Without the walk's facts they are
/// found the same way (a directory that is not empty), with no sizes, so a plan made
/// without the walk (`convert` without `--plan`) has the volumes `inspect`'s has.
pub fn collect(root: &Root, facts: Option<&WalkFacts>) -> Vec<DataDir> {
    DATA_DIRS
        .iter()
        .filter_map(|(dir, holds)| {
            let (bytes, entries) = match facts {
                Some(f) => f.data_dirs.get(dir).copied()?,
                None if root.list(dir).is_empty() => return None,
                None => (0, 0),
            };
            // A link (/var/mail → spool/mail) is the same directory listed once.
            if !root
                .lstat(dir)
                .is_some_and(|e| e.kind == crate::entry::Kind::Dir)
            {
                return None;
            }
            Some(DataDir {
                path: format!("/{dir}"),
                holds: holds.to_string(),
                bytes,
                entries,
            })
        })
        .collect()
}
