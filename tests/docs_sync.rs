//! The committed references are what the code generates: `docs/ERROR-CODES.md` from the
//! catalogue, `docs/CONFIG.md` and `docs/config.schema.json` from the configuration types.
//! `make docs` (UPDATE_DOCS=1) rewrites them.

// Test code: panicking on a broken fixture is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice)]

mod common;

use apim_filter::docs;
use common::repo_root;

fn check(relative: &str, generated: String) {
    let path = repo_root().join(relative);
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(&path, &generated).expect("write generated doc");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(committed == generated, "{relative} is stale: run `make docs` and commit the result");
}

#[test]
fn error_code_reference_is_current() {
    check("docs/ERROR-CODES.md", docs::error_code_reference());
}

#[test]
fn config_reference_is_current() {
    check("docs/CONFIG.md", docs::config_reference());
}

#[test]
fn config_schema_is_current() {
    check("docs/config.schema.json", docs::config_schema());
}

#[test]
fn the_error_reference_lists_every_catalogue_code() {
    let reference = docs::error_code_reference();
    for id in apim_filter::catalogue::ALL {
        assert!(reference.contains(&format!("`{}`", id.spec().id)), "{} missing", id.spec().id);
    }
}
