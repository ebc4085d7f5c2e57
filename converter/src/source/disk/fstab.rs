//! The guest's own /etc/fstab: which filesystem is mounted where, and how it is named
//! (UUID=, LABEL=, PARTUUID=, a /dev path).

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub spec: String,
    pub mount_point: String,
    pub fstype: String,
    pub options: Vec<String>,
}

/// How a mount names its device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spec {
    Uuid(String),
    Label(String),
    PartUuid(String),
    /// sda2, vda2, xvda2, nvme0n1p2, mmcblk0p2: partition 2 of the (only) disk.
    PartitionNumber(u32),
    /// /dev/mapper/VG-LV or /dev/VG/LV.
    Lvm {
        vg: String,
        lv: String,
    },
    Other,
}

pub fn parse(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let line = line.split('#').next()?.trim();
            let mut f = line.split_whitespace();
            let spec = unescape(f.next()?);
            let mount_point = unescape(f.next()?);
            let fstype = f.next().unwrap_or("auto").to_string();
            let options = f
                .next()
                .unwrap_or("defaults")
                .split(',')
                .map(str::to_string)
                .collect();
            Some(Mount {
                spec,
                mount_point,
                fstype,
                options,
            })
        })
        .collect()
}

/// fstab writes a space in a field as `\040`.
fn unescape(field: &str) -> String {
    field.replace("\\040", " ").replace("\\011", "\t")
}

pub fn spec(s: &str) -> Spec {
    let unquote = |v: &str| v.trim_matches('"').to_string();
    if let Some(v) = s.strip_prefix("UUID=") {
        return Spec::Uuid(unquote(v).to_lowercase());
    }
    if let Some(v) = s.strip_prefix("LABEL=") {
        return Spec::Label(unquote(v));
    }
    if let Some(v) = s.strip_prefix("PARTUUID=") {
        return Spec::PartUuid(unquote(v).to_lowercase());
    }
    if let Some(v) = s.strip_prefix("/dev/disk/by-uuid/") {
        return Spec::Uuid(v.to_lowercase());
    }
    if let Some(v) = s.strip_prefix("/dev/disk/by-label/") {
        return Spec::Label(v.replace("\\x20", " "));
    }
    if let Some(v) = s.strip_prefix("/dev/disk/by-partuuid/") {
        return Spec::PartUuid(v.to_lowercase());
    }
    if let Some(rest) = s.strip_prefix("/dev/mapper/") {
        // Dashes inside names are doubled; a single dash separates VG and LV.
        let chars: Vec<char> = rest.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            if chars[i] == '-' {
                if chars.get(i + 1) == Some(&'-') {
                    i += 2;
                    continue;
                }
                let vg: String = chars[..i].iter().collect();
                let lv: String = chars[i + 1..].iter().collect();
                return Spec::Lvm {
                    vg: vg.replace("--", "-"),
                    lv: lv.replace("--", "-"),
                };
            }
            i += 1;
        }
        return Spec::Other;
    }
    if let Some(rest) = s.strip_prefix("/dev/") {
        let parts: Vec<&str> = rest.split('/').collect();
        if parts.len() == 2 {
            return Spec::Lvm {
                vg: parts[0].into(),
                lv: parts[1].into(),
            };
        }
        let digits_at = rest.trim_end_matches(|c: char| c.is_ascii_digit()).len();
        let (base, num) = rest.split_at(digits_at);
        let whole_disk = ["sd", "vd", "xvd", "hd"].iter().any(|p| {
            base.strip_prefix(p)
                .is_some_and(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_lowercase()))
        }) || ((base.starts_with("nvme") || base.starts_with("mmcblk"))
            && base.ends_with('p'));
        if whole_disk {
            if let Ok(n) = num.parse() {
                return Spec::PartitionNumber(n);
            }
        }
    }
    Spec::Other
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_usual_ways_of_naming_a_device() {
        let m = parse("# comment\nUUID=AB-cd /var ext4 defaults,noatime 0 2\n\n/dev/sda1 /boot ext2 defaults 0 0\n");
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].mount_point, "/var");
        assert_eq!(spec(&m[0].spec), Spec::Uuid("ab-cd".into()));
        assert_eq!(spec("/dev/sda1"), Spec::PartitionNumber(1));
        assert_eq!(spec("/dev/nvme0n1p3"), Spec::PartitionNumber(3));
        assert_eq!(spec("/dev/xvda12"), Spec::PartitionNumber(12));
        assert_eq!(spec("/dev/sda"), Spec::Other);
        assert_eq!(spec("LABEL=\"data\""), Spec::Label("data".into()));
        assert_eq!(
            spec("/dev/mapper/centos-root"),
            Spec::Lvm {
                vg: "centos".into(),
                lv: "root".into()
            }
        );
        assert_eq!(
            spec("/dev/mapper/my--vg-lv--home"),
            Spec::Lvm {
                vg: "my-vg".into(),
                lv: "lv-home".into()
            }
        );
        assert_eq!(
            spec("/dev/rhel/swap"),
            Spec::Lvm {
                vg: "rhel".into(),
                lv: "swap".into()
            }
        );
    }
}
