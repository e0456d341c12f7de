//! The fuzz targets' checks (`fuzz/checks.rs`), run in CI on saved inputs:
//!
//! - `fuzz/seeds/<target>/`: the seed inputs `fuzz/run.sh` starts each target from; every one
//!   must pass (this keeps the checks themselves honest);
//! - `fuzz/regressions/<target>/`: every input a target ever failed on, fed to the same check,
//!   so a crash found once stays fixed. A file whose name starts with `known-bug-` is an input
//!   for a gateway bug that is not fixed yet: it is run and reported, but does not fail the
//!   test; rename it (drop the prefix) when the bug is fixed.

#[path = "../fuzz/checks.rs"]
mod checks;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

type Check = fn(&[u8]);

/// Every fuzz target and its check (the same list as `fuzz/Cargo.toml`).
const TARGETS: &[(&str, Check)] = &[
    ("soap_envelope", checks::soap_envelope),
    ("xml_to_json", checks::xml_to_json),
    ("json_check", checks::json_check),
    ("json_to_xml", checks::json_to_xml),
    ("charset", checks::charset),
    ("files_token", checks::files_token),
    ("signed_call", checks::signed_call),
    ("link_rewrite", checks::link_rewrite),
    ("forwarded_for", checks::forwarded_for),
    ("config_toml", checks::config_toml),
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The files directly in `dir`, sorted; none if it does not exist.
fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v
}

fn run(check: Check, file: &Path) -> Result<(), String> {
    let data = std::fs::read(file).unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
    catch_unwind(AssertUnwindSafe(|| check(&data))).map_err(|p| {
        p.downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panicked".to_string())
    })
}

#[test]
fn every_target_has_seeds_and_every_seed_passes_its_check() {
    let mut failures = Vec::new();
    for (target, check) in TARGETS {
        let seeds = files(&fuzz_dir().join("seeds").join(target));
        assert!(!seeds.is_empty(), "fuzz/seeds/{target}/ has no seed input");
        for f in seeds {
            if let Err(e) = run(*check, &f) {
                failures.push(format!("{}: {e}", f.display()));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "seeds failing their check:\n{}",
        failures.join("\n")
    );
}

#[test]
fn every_saved_fuzz_failure_stays_fixed() {
    let root = fuzz_dir().join("regressions");
    let stray = files(&root);
    assert!(
        stray.is_empty(),
        "{stray:?}: inputs go in fuzz/regressions/<target>/"
    );
    if let Ok(entries) = std::fs::read_dir(&root) {
        for e in entries.filter_map(Result::ok) {
            let name = e.file_name().to_string_lossy().into_owned();
            assert!(
                TARGETS.iter().any(|(t, _)| *t == name),
                "fuzz/regressions/{name}/ is not a fuzz target"
            );
        }
    }
    let (mut checked, mut known) = (0, 0);
    let mut failures = Vec::new();
    for (target, check) in TARGETS {
        for f in files(&root.join(target)) {
            checked += 1;
            let name = f.file_name().map(|n| n.to_string_lossy().into_owned());
            let is_known = name.is_some_and(|n| n.starts_with("known-bug-"));
            match (run(*check, &f), is_known) {
                (Ok(()), false) => {}
                (Ok(()), true) => println!(
                    "{}: now passes: the bug is fixed, drop the known-bug- prefix",
                    f.display()
                ),
                (Err(e), true) => {
                    known += 1;
                    println!("KNOWN BUG (not failing) {}: {e}", f.display());
                }
                (Err(e), false) => failures.push(format!("{}: {e}", f.display())),
            }
        }
    }
    println!("fuzz regressions: {checked} input(s) checked, {known} known gateway bug(s)");
    assert!(failures.is_empty(), "regressions:\n{}", failures.join("\n"));
}
