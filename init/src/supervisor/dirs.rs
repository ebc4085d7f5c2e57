//! The directories systemd makes for a service before it starts (`RuntimeDirectory=`,
//! `StateDirectory=`, `CacheDirectory=`, `LogsDirectory=`, `ConfigurationDirectory=`):
//! under their base, with their mode, owned by the service's user and group (configuration
//! stays root's), and named to the service in `RUNTIME_DIRECTORY` and the others.

use super::start_error::StartError;
use crate::units::systemd::Service;
use crate::users::Credentials;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// One kind of directory.
struct Kind<'a> {
    var: &'static str,
    base: &'static str,
    names: &'a [String],
    mode: u32,
    owned: bool,
}

fn kinds(svc: &Service) -> [Kind<'_>; 5] {
    let m = svc.directory_modes;
    [
        Kind {
            var: "RUNTIME_DIRECTORY",
            base: "/run",
            names: &svc.runtime_directory,
            mode: m.runtime,
            owned: true,
        },
        Kind {
            var: "STATE_DIRECTORY",
            base: "/var/lib",
            names: &svc.state_directory,
            mode: m.state,
            owned: true,
        },
        Kind {
            var: "CACHE_DIRECTORY",
            base: "/var/cache",
            names: &svc.cache_directory,
            mode: m.cache,
            owned: true,
        },
        Kind {
            var: "LOGS_DIRECTORY",
            base: "/var/log",
            names: &svc.logs_directory,
            mode: m.logs,
            owned: true,
        },
        Kind {
            var: "CONFIGURATION_DIRECTORY",
            base: "/etc",
            names: &svc.configuration_directory,
            mode: m.configuration,
            owned: false,
        },
    ]
}

/// Creates the directories of `svc` under `root` (a host path: "/" in the container) for
/// a service running as `creds`. Gives the environment variables naming them (paths as
/// the service sees them, `:`-separated).
pub fn create(
    root: &Path,
    svc: &Service,
    creds: &Credentials,
) -> Result<Vec<(&'static str, String)>, StartError> {
    let mut env = Vec::new();
    for k in kinds(svc) {
        if k.names.is_empty() {
            continue;
        }
        let mut paths = Vec::new();
        for name in k.names {
            let name = name.trim_matches('/');
            if name.is_empty() || name.split('/').any(|c| c == ".." || c == ".") {
                return Err(StartError::BadPath(format!("{}/{name}", k.base)));
            }
            let shown = format!("{}/{name}", k.base);
            let p = root.join(shown.trim_start_matches('/'));
            let err = |source| StartError::CreateDir {
                path: shown.clone(),
                source,
            };
            std::fs::create_dir_all(&p).map_err(err)?;
            if k.owned {
                // An id the namespace does not map: the service may still manage.
                let _ = std::os::unix::fs::chown(&p, Some(creds.uid), Some(creds.gid));
            }
            // After chown, which may clear the set-group-id bit.
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(k.mode)).map_err(err)?;
            paths.push(shown);
        }
        env.push((k.var, paths.join(":")));
    }
    Ok(env)
}

/// Removes the runtime directories of `svc` under `root` (when it stopped).
pub fn remove_runtime(root: &Path, svc: &Service) {
    for name in &svc.runtime_directory {
        let name = name.trim_matches('/');
        if name.is_empty() || name.split('/').any(|c| c == ".." || c == ".") {
            continue;
        }
        let _ = std::fs::remove_dir_all(root.join("run").join(name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::systemd::DirectoryModes;
    use crate::units::tests_support::tempdir;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn makes_each_kind_with_its_mode_and_owner() {
        let d = tempdir();
        let r = d.as_path();
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        let creds = Credentials {
            user: "me".into(),
            uid,
            gid,
            groups: vec![gid],
            home: "/".into(),
            shell: "/bin/sh".into(),
        };
        let svc = Service {
            runtime_directory: vec!["redis".into()],
            state_directory: vec!["app".into(), "app/sub".into()],
            logs_directory: vec!["app".into()],
            configuration_directory: vec!["app".into()],
            directory_modes: DirectoryModes {
                runtime: 0o2755,
                state: 0o750,
                ..DirectoryModes::default()
            },
            ..Service::default()
        };
        let env = create(r, &svc, &creds).unwrap();
        assert_eq!(
            env,
            [
                ("RUNTIME_DIRECTORY", "/run/redis".to_string()),
                (
                    "STATE_DIRECTORY",
                    "/var/lib/app:/var/lib/app/sub".to_string()
                ),
                ("LOGS_DIRECTORY", "/var/log/app".to_string()),
                ("CONFIGURATION_DIRECTORY", "/etc/app".to_string()),
            ]
        );
        let mode = |p: &str| std::fs::metadata(r.join(p)).unwrap().mode() & 0o7777;
        assert_eq!(mode("run/redis"), 0o2755);
        assert_eq!(mode("var/lib/app/sub"), 0o750);
        assert_eq!(mode("var/log/app"), 0o755);
        assert_eq!(std::fs::metadata(r.join("run/redis")).unwrap().uid(), uid);
        remove_runtime(r, &svc);
        assert!(!r.join("run/redis").exists());
        assert!(r.join("var/lib/app").exists());
        let bad = Service {
            runtime_directory: vec!["../etc".into()],
            ..Service::default()
        };
        assert!(matches!(
            create(r, &bad, &creds),
            Err(StartError::BadPath(_))
        ));
    }
}
