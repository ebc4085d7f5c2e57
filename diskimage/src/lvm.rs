//! LVM2 linear logical volumes, mapped from the volume group's own text metadata, in
//! pure Rust: the physical volume label and header, the metadata area's ring buffer,
//! and the metadata's `segment { stripes = [ "pv0", PE ] }` mapping of extents.
//!
//! Striped (more than one stripe), thin, RAID, cache and snapshot volumes are named
//! and left out.

use crate::device::{corrupt, le32, le64, read_vec, BlockDevice, Device};
use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;

const SECTOR: u64 = 512;
const MDA_MAGIC: &[u8] = b" LVM2 x[5A%r0N*>";
const MAX_METADATA: u64 = 16 << 20;

/// A physical volume: its UUID (no dashes), where its extents start and its metadata.
pub struct Pv {
    uuid: String,
    dev: Device,
    metadata: Option<String>,
}

/// A logical volume found: VG and LV names, and its device (or why there is none).
pub struct Lv {
    pub vg: String,
    pub name: String,
    pub dev: Result<Device, Unmapped>,
}

/// Why a logical volume has no device: each names the volume group and the volume.
#[derive(Debug, thiserror::Error)]
pub enum Unmapped {
    #[error("LV {vg}/{lv} is not linear (segment type {kind}); rehost maps linear volumes only")]
    NotLinear {
        vg: String,
        lv: String,
        kind: String,
    },
    #[error("LV {vg}/{lv}: a segment has no extents")]
    NoExtents { vg: String, lv: String },
    #[error("LV {vg}/{lv} lies on a physical volume not on this disk")]
    ForeignPv { vg: String, lv: String },
    #[error("LV {vg}/{lv} runs past the end of its physical volume (truncated image?)")]
    Truncated { vg: String, lv: String },
    #[error("LV {vg}/{lv} has a gap in its extents")]
    Gap { vg: String, lv: String },
}

pub fn read_pv(dev: Device) -> io::Result<Pv> {
    let head = read_vec(dev.as_ref(), 0, 4 * 512)?;
    let label = (0..4)
        .map(|s| s * 512)
        .find(|&at| &head[at..at + 8] == b"LABELONE" && &head[at + 24..at + 32] == b"LVM2 001")
        .ok_or_else(|| corrupt("no LVM2 label"))?;
    let pvh = label + le32(&head, label + 20) as usize;
    if pvh + 40 > head.len() {
        return Err(corrupt(
            "LVM physical volume header lies outside the label sectors",
        ));
    }
    let uuid = String::from_utf8_lossy(&head[pvh..pvh + 32]).into_owned();
    // Data areas, then metadata areas: (offset, size) pairs each ended by zeros.
    let mut at = pvh + 40;
    let mut lists: [Vec<(u64, u64)>; 2] = [Vec::new(), Vec::new()];
    for list in lists.iter_mut() {
        loop {
            if at + 16 > head.len() {
                return Err(corrupt("LVM physical volume header runs past its sector"));
            }
            let (offset, size) = (le64(&head, at), le64(&head, at + 8));
            at += 16;
            if offset == 0 {
                break;
            }
            list.push((offset, size));
        }
    }
    let mut metadata = None;
    if let Some(&(mda, mda_size)) = lists[1].first() {
        metadata = Some(read_metadata(&dev, mda, mda_size)?);
    }
    Ok(Pv {
        uuid,
        dev,
        metadata,
    })
}

fn read_metadata(dev: &Device, mda: u64, mda_size: u64) -> io::Result<String> {
    let end = mda.checked_add(mda_size).filter(|&end| end <= dev.len());
    if end.is_none() {
        return Err(corrupt("LVM metadata area lies beyond the physical volume"));
    }
    let h = read_vec(dev.as_ref(), mda, 512)?;
    if &h[4..20] != MDA_MAGIC {
        return Err(corrupt("LVM metadata area has no magic"));
    }
    let (offset, size) = (le64(&h, 40), le64(&h, 48));
    if size == 0 || size > MAX_METADATA || offset >= mda_size || mda_size < 1024 {
        return Err(corrupt("LVM metadata area holds no usable metadata"));
    }
    // A ring buffer after the 512-byte header: the text may wrap to its start.
    let first = size.min(mda_size - offset);
    let mut text = read_vec(dev.as_ref(), mda + offset, first as usize)?;
    if first < size {
        text.extend(read_vec(dev.as_ref(), mda + 512, (size - first) as usize)?);
    }
    while text.last() == Some(&0) {
        text.pop();
    }
    Ok(String::from_utf8_lossy(&text).into_owned())
}

/// The logical volumes that the metadata `text` maps onto one physical volume `dev`
/// whose UUID (without dashes) is `uuid`: the metadata parser alone, for fuzzing.
pub fn from_metadata(text: &str, uuid: &str, dev: Device) -> io::Result<Vec<Lv>> {
    logical_volumes(&[Pv {
        uuid: uuid.to_string(),
        dev,
        metadata: Some(text.to_string()),
    }])
}

/// The logical volumes of every volume group whose PVs are given.
pub fn logical_volumes(pvs: &[Pv]) -> io::Result<Vec<Lv>> {
    let mut out = Vec::new();
    let mut seen_vgs = std::collections::HashSet::new();
    for pv in pvs {
        let Some(text) = &pv.metadata else { continue };
        let root = parse(text)?;
        for (vg, section) in root.sections() {
            if !seen_vgs.insert(vg.clone()) {
                continue;
            }
            out.extend(vg_volumes(vg, section, pvs)?);
        }
    }
    Ok(out)
}

fn vg_volumes(vg: &str, section: &Section, pvs: &[Pv]) -> io::Result<Vec<Lv>> {
    let bad = |what: &str| corrupt(format!("LVM volume group {vg}: {what}"));
    let extent = section
        .num("extent_size")
        .and_then(|n| n.checked_mul(SECTOR))
        .filter(|&n| n > 0)
        .ok_or_else(|| bad("no usable extent_size"))?;
    // pv0 → (device, first extent's byte offset)
    let mut devices: BTreeMap<String, (Device, u64)> = BTreeMap::new();
    if let Some(phys) = section.section("physical_volumes") {
        for (name, p) in phys.sections() {
            let id = p.string("id").unwrap_or_default().replace('-', "");
            let pe_start = p.num("pe_start").unwrap_or(0).saturating_mul(SECTOR);
            if let Some(pv) = pvs.iter().find(|pv| pv.uuid == id) {
                devices.insert(name.clone(), (pv.dev.clone(), pe_start));
            }
        }
    }
    let mut out = Vec::new();
    let Some(lvs) = section.section("logical_volumes") else {
        return Ok(out);
    };
    for (name, lv) in lvs.sections() {
        let mut pieces = Vec::new();
        let mut why = None;
        for (_, seg) in lv.sections() {
            let kind = seg.string("type").unwrap_or_default();
            let stripes = seg.list("stripes");
            if kind != "striped" || seg.num("stripe_count") != Some(1) || stripes.len() != 2 {
                why = Some(Unmapped::NotLinear {
                    vg: vg.to_string(),
                    lv: name.clone(),
                    kind: kind.to_string(),
                });
                break;
            }
            let (Some(start), Some(count)) = (seg.num("start_extent"), seg.num("extent_count"))
            else {
                why = Some(Unmapped::NoExtents {
                    vg: vg.to_string(),
                    lv: name.clone(),
                });
                break;
            };
            let Some((dev, pe_start)) = devices.get(stripes[0].trim_matches('"')) else {
                why = Some(Unmapped::ForeignPv {
                    vg: vg.to_string(),
                    lv: name.clone(),
                });
                break;
            };
            let pe: u64 = stripes[1].parse().map_err(|_| bad("bad stripe start"))?;
            // Numbers from the metadata: any product past the device is a truncation.
            let dev_off = pe
                .checked_mul(extent)
                .and_then(|o| o.checked_add(*pe_start));
            let len = count.checked_mul(extent);
            let at = start.checked_mul(extent);
            let (Some(dev_off), Some(len), Some(at)) = (dev_off, len, at) else {
                why = Some(Unmapped::Truncated {
                    vg: vg.to_string(),
                    lv: name.clone(),
                });
                break;
            };
            if dev_off.checked_add(len).is_none_or(|end| end > dev.len())
                || at.checked_add(len).is_none()
            {
                why = Some(Unmapped::Truncated {
                    vg: vg.to_string(),
                    lv: name.clone(),
                });
                break;
            }
            pieces.push(Piece {
                at,
                len,
                dev: dev.clone(),
                dev_off,
            });
        }
        pieces.sort_by_key(|p| p.at);
        let mut next = 0;
        for p in &pieces {
            if p.at != next && why.is_none() {
                why = Some(Unmapped::Gap {
                    vg: vg.to_string(),
                    lv: name.clone(),
                });
            }
            next = p.at + p.len;
        }
        out.push(Lv {
            vg: vg.to_string(),
            name: name.clone(),
            dev: match why {
                Some(w) => Err(w),
                None => Ok(Arc::new(Linear { pieces, len: next }) as Device),
            },
        });
    }
    Ok(out)
}

struct Piece {
    at: u64,
    len: u64,
    dev: Device,
    dev_off: u64,
}

/// A logical volume: its extents, piece by piece, on physical volumes.
struct Linear {
    pieces: Vec<Piece>,
    len: u64,
}

impl BlockDevice for Linear {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        if offset
            .checked_add(buf.len() as u64)
            .is_none_or(|e| e > self.len)
        {
            return Err(corrupt(format!("LV: read at {offset} past its end")));
        }
        let mut done = 0;
        while done < buf.len() {
            let pos = offset + done as u64;
            let i = self.pieces.partition_point(|p| p.at + p.len <= pos);
            let p = &self.pieces[i];
            let n = (buf.len() - done).min((p.at + p.len - pos) as usize);
            p.dev
                .read_at(&mut buf[done..done + n], p.dev_off + pos - p.at)?;
            done += n;
        }
        Ok(())
    }
}

/// The metadata's text format: `name = value`, `name { ... }`, `[ a, b ]` lists.
#[derive(Default, Debug)]
struct Section {
    values: Vec<(String, Value)>,
}

#[derive(Debug)]
enum Value {
    Scalar(String),
    List(Vec<String>),
    Section(Section),
}

impl Section {
    fn sections(&self) -> impl Iterator<Item = (&String, &Section)> {
        self.values.iter().filter_map(|(k, v)| match v {
            Value::Section(s) => Some((k, s)),
            _ => None,
        })
    }
    fn section(&self, name: &str) -> Option<&Section> {
        self.sections().find(|(k, _)| *k == name).map(|(_, s)| s)
    }
    fn scalar(&self, name: &str) -> Option<&str> {
        self.values.iter().find_map(|(k, v)| match v {
            Value::Scalar(s) if k == name => Some(s.as_str()),
            _ => None,
        })
    }
    fn string(&self, name: &str) -> Option<String> {
        self.scalar(name).map(|s| s.trim_matches('"').to_string())
    }
    fn num(&self, name: &str) -> Option<u64> {
        self.scalar(name)?.parse().ok()
    }
    fn list(&self, name: &str) -> Vec<String> {
        self.values
            .iter()
            .find_map(|(k, v)| match v {
                Value::List(l) if k == name => Some(l.clone()),
                _ => None,
            })
            .unwrap_or_default()
    }
}

fn tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            '#' => while chars.next().is_some_and(|c| c != '\n') {},
            c if c.is_whitespace() || c == ',' => {
                chars.next();
            }
            '{' | '}' | '[' | ']' | '=' => {
                out.push(c.to_string());
                chars.next();
            }
            '"' => {
                let mut s = String::from('"');
                chars.next();
                while let Some(c) = chars.next() {
                    if c == '\\' {
                        if let Some(n) = chars.next() {
                            s.push(n);
                        }
                        continue;
                    }
                    if c == '"' {
                        break;
                    }
                    s.push(c);
                }
                s.push('"');
                out.push(s);
            }
            _ => {
                let mut s = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || "{}[]=,#\"".contains(c) {
                        break;
                    }
                    s.push(c);
                    chars.next();
                }
                out.push(s);
            }
        }
    }
    out
}

fn parse(text: &str) -> io::Result<Section> {
    let toks = tokens(text);
    let mut pos = 0;
    let s = parse_section(&toks, &mut pos, 0)?;
    Ok(s)
}

fn parse_section(t: &[String], pos: &mut usize, depth: usize) -> io::Result<Section> {
    let bad = || corrupt("LVM metadata cannot be parsed");
    if depth > 16 {
        return Err(bad());
    }
    let mut section = Section::default();
    while *pos < t.len() {
        if t[*pos] == "}" {
            *pos += 1;
            return Ok(section);
        }
        let key = t[*pos].clone();
        *pos += 1;
        match t.get(*pos).map(String::as_str) {
            Some("{") => {
                *pos += 1;
                let s = parse_section(t, pos, depth + 1)?;
                section.values.push((key, Value::Section(s)));
            }
            Some("=") => {
                *pos += 1;
                if t.get(*pos).map(String::as_str) == Some("[") {
                    *pos += 1;
                    let mut list = Vec::new();
                    while t.get(*pos).ok_or_else(bad)? != "]" {
                        list.push(t[*pos].clone());
                        *pos += 1;
                    }
                    *pos += 1;
                    section.values.push((key, Value::List(list)));
                } else {
                    let v = t.get(*pos).ok_or_else(bad)?.clone();
                    *pos += 1;
                    section.values.push((key, Value::Scalar(v)));
                }
            }
            _ => return Err(bad()),
        }
    }
    Ok(section)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_metadata_text() {
        let s = parse(
            "vg { # comment\n extent_size = 8192\n logical_volumes { root { segment1 { type = \"striped\" stripes = [\n\"pv0\", 10\n] } } } }\ncontents = \"Text\"\n",
        )
        .unwrap();
        let vg = s.section("vg").unwrap();
        assert_eq!(vg.num("extent_size"), Some(8192));
        let seg = vg
            .section("logical_volumes")
            .unwrap()
            .section("root")
            .unwrap()
            .section("segment1")
            .unwrap();
        assert_eq!(seg.list("stripes"), vec!["\"pv0\"", "10"]);
        assert_eq!(s.string("contents").as_deref(), Some("Text"));
        assert!(parse("vg { a = ").is_err());
    }
}
