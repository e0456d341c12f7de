//! The specification's interfaces as data, and the lookups the listeners route on.
//!
//! `catalog.json` is generated from the spec by `tools/gen_catalog.py` and checked in; the binary
//! embeds it, so routing never depends on files outside the project.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::Deserialize;

/// Which way a call crosses the box.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// The HIS calls `POST /prefront/<path>`; the box calls the cloud.
    HisToCloud,
    /// The cloud calls `POST /his/<name>`; the box calls the HIS.
    CloudToHis,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::HisToCloud => "his_to_cloud",
            Direction::CloudToHis => "cloud_to_his",
        }
    }
}

/// What a call does, which decides how it may be buffered (DESIGN.md §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Query,
    Business,
    Notify,
    File,
}

/// The answer shape the box must use when it raises an outcome itself on this interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Envelope {
    /// `{success, msg, code, data}`: the spec's convention.
    #[default]
    Standard,
    /// `{success, message, status}`: the 21.1.x appointment-platform uploads.
    Status,
    /// `{success, message, data}`: 14.1.2.
    Message,
}

/// One interface of the specification.
#[derive(Debug, Clone, Deserialize)]
pub struct Entry {
    /// Spec chapter, e.g. "13.2.1"; what an operator looks up in the document.
    pub chapter: String,
    pub title: String,
    pub direction: Direction,
    /// `hospital.interface.*` name (cloud → HIS); a few spec sections have none.
    pub name: Option<String>,
    /// `prefront/...` path without a leading slash (HIS → cloud).
    pub path: Option<String>,
    /// The WebService method the spec gives for this path, if any.
    pub ws_method: Option<String>,
    pub kind: Kind,
    /// Request fields that identify one business operation (dedup in the buffer).
    pub idempotency_key: Vec<String>,
    pub envelope: Envelope,
    /// The code a call of this interface accepted into the buffer is answered with, when it is
    /// not the usual one (10001 notify, 40004 business): "10002" for the refunds, which 附四
    /// defines as "refund state unknown, retry with the same number".
    #[serde(default)]
    pub queued_code: Option<String>,
    /// Answers carry whole documents (PDFs, invoices, base64 images): the larger answer limit.
    #[serde(default)]
    pub carries_documents: bool,
}

#[derive(Deserialize)]
struct File {
    entries: Vec<Entry>,
}

/// The whole catalogue with its indexes.
#[derive(Debug)]
pub struct Catalog {
    entries: Vec<Entry>,
    /// Lower-cased `prefront/...` path → index of its first entry (13.2.1 repeats 9.1.1's path).
    by_path: HashMap<String, usize>,
    /// Exact `hospital.interface.*` name → index.
    by_name: HashMap<String, usize>,
}

static CATALOG: OnceLock<Catalog> = OnceLock::new();

impl Catalog {
    /// The catalogue embedded in the binary.
    pub fn get() -> &'static Catalog {
        CATALOG.get_or_init(|| {
            // The file is part of the binary and covered by tests: failing here is a build defect.
            let file: File = serde_json::from_str(include_str!("catalog.json"))
                .expect("embedded catalog.json is valid");
            Catalog::from_entries(file.entries)
        })
    }

    fn from_entries(entries: Vec<Entry>) -> Catalog {
        let mut by_path = HashMap::new();
        let mut by_name = HashMap::new();
        for (i, e) in entries.iter().enumerate() {
            if let Some(p) = &e.path {
                by_path.entry(p.to_ascii_lowercase()).or_insert(i);
            }
            if let Some(n) = &e.name {
                by_name.entry(n.clone()).or_insert(i);
            }
        }
        Catalog {
            entries,
            by_path,
            by_name,
        }
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Finds the HIS → cloud interface for a request path such as `/prefront/patient/genCard`.
    /// Matching ignores case and extra leading slashes (the spec's own sample client sends
    /// `//prefront/...`), so the canonical spelling is what goes upstream.
    pub fn by_request_path(&self, request_path: &str) -> Option<&Entry> {
        let p = request_path.trim_start_matches('/').trim_end_matches('/');
        self.by_path
            .get(&p.to_ascii_lowercase())
            .map(|&i| &self.entries[i])
    }

    /// Finds the cloud → HIS interface by its exact `hospital.interface.*` name.
    pub fn by_name(&self, name: &str) -> Option<&Entry> {
        self.by_name.get(name).map(|&i| &self.entries[i])
    }

    /// Distinct HIS → cloud paths.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        let mut seen = std::collections::HashSet::new();
        self.entries
            .iter()
            .filter_map(|e| e.path.as_deref())
            .filter(move |p| seen.insert(*p))
    }

    /// Distinct cloud → HIS names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        let mut seen = std::collections::HashSet::new();
        self.entries
            .iter()
            .filter(|e| e.direction == Direction::CloudToHis)
            .filter_map(|e| e.name.as_deref())
            .filter(move |n| seen.insert(*n))
    }
}

/// The short form of a cloud → HIS name: what follows the `hospital.interface.` (or the spec's
/// misspelt `hospital.inerface.`) prefix, e.g. `createCard`, `appointment.regSchedule`.
pub fn short_name(name: &str) -> &str {
    for prefix in ["hospital.interface.", "hospital.inerface."] {
        if let Some(rest) = name.strip_prefix(prefix) {
            return rest;
        }
    }
    name
}

/// A name the cloud may use in `/his/<name>`: letters, digits, `.`, `_`, `-`; so it can be put
/// into a URL or a log line without escaping.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_holds_every_spec_interface() {
        let c = Catalog::get();
        assert_eq!(c.entries().len(), 190);
        assert_eq!(c.paths().count(), 44);
        assert_eq!(c.names().count(), 136);
        for n in c.names() {
            assert!(is_valid_name(n), "{n} must be routable");
        }
    }

    #[test]
    fn path_lookup_is_lenient_about_case_and_slashes() {
        let c = Catalog::get();
        let e = c
            .by_request_path("//prefront/patient/genCard")
            .expect("found");
        assert_eq!(e.path.as_deref(), Some("prefront/patient/genCard"));
        assert!(c.by_request_path("/PREFRONT/PATIENT/GENCARD/").is_some());
        assert!(c.by_request_path("/prefront/patient/nothing").is_none());
    }

    #[test]
    fn envelopes_follow_the_spec() {
        let c = Catalog::get();
        let e = c
            .by_request_path("prefront/yyghService/hospital")
            .expect("21.1.1");
        assert_eq!(e.envelope, Envelope::Status);
        let e = c
            .by_request_path("prefront/patient/genCard")
            .expect("1.3.2");
        assert_eq!(e.envelope, Envelope::Standard);
    }

    #[test]
    fn short_names() {
        assert_eq!(short_name("hospital.interface.createCard"), "createCard");
        assert_eq!(
            short_name("hospital.inerface.internetHospital.save"),
            "internetHospital.save"
        );
        assert_eq!(short_name("custom"), "custom");
        assert!(!is_valid_name("a/b"));
        assert!(!is_valid_name("a b"));
        assert!(!is_valid_name(""));
    }
}

/// Whether answers on this name carry whole documents (PDFs, invoices, images as base64), so
/// they get the larger answer size limit: the catalogue's `carries_documents`.
pub fn carries_documents(name: &str) -> bool {
    Catalog::get()
        .by_name(name)
        .is_some_and(|e| e.carries_documents)
}

#[cfg(test)]
mod document_tests {
    use super::*;

    #[test]
    fn report_files_get_the_document_limit_and_queries_do_not() {
        for name in [
            "hospital.interface.lisReportPdf",
            "hospital.interface.createElectronicInvoice",
            "hospital.interface.ecgReportImage",
            "hospital.interface.pathologyReportFile",
            "hospital.interface.inhospitalEducation.getDetailById",
        ] {
            assert!(carries_documents(name), "{name}");
        }
        for name in [
            "hospital.interface.pacsReportDcm",
            "hospital.interface.queryBalance",
            "x",
        ] {
            assert!(!carries_documents(name), "{name}");
        }
    }
}
