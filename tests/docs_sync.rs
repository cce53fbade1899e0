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

/// The `.count(…)` calls of the filter's own code (test modules left out): each argument's text.
fn counted_in_sources() -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut folders = vec![repo_root().join("src")];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                if name != "tests" {
                    folders.push(path);
                }
                continue;
            }
            if !name.ends_with(".rs") || name.ends_with("tests.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let code = text.split("#[cfg(test)]\nmod tests {").next().unwrap();
            for (at, _) in code.match_indices(".count(") {
                let rest = &code[at + ".count(".len()..];
                let mut depth = 1;
                let end = rest
                    .char_indices()
                    .find(|&(_, c)| {
                        depth += match c {
                            '(' => 1,
                            ')' => -1,
                            _ => 0,
                        };
                        depth == 0
                    })
                    .map(|(end, _)| end)
                    .unwrap();
                let argument: String = rest[..end].split_whitespace().collect::<Vec<_>>().join(" ");
                if !argument.is_empty() {
                    found.push((path.strip_prefix(repo_root()).unwrap().display().to_string(), argument));
                }
            }
        }
    }
    found
}

#[test]
fn every_counter_the_filter_keeps_is_documented() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let howto = std::fs::read_to_string(repo_root().join("docs/HOWTO.md")).unwrap();
    // Counters built from the configuration (src/routing/table.rs, src/observe.rs; their names are
    // unit-tested there), the glue's hand-over to Envoy, and a named gateway's (src/host.rs: the
    // same names under `apim.gw.<name>.`).
    let built = ["&api.stats_allowed", "&observe::refused_stat(&api.stats_prefix, fault)", "stat", "name"];
    for documented in [
        "apim.api.<name>.version.<version>.allowed",
        "apim.api.<name>.version.<version>.refused.code.<code>.level.<level>",
        "apim.application.<name>.owner.<owner>.allowed|refused",
    ] {
        assert!(readme.contains(documented), "README lacks `{documented}`");
    }
    let counted = counted_in_sources();
    assert!(counted.len() >= 8, "the scan finds the counters: {counted:?}");
    for (file, argument) in counted {
        let literal = argument.split('"').nth(1);
        let Some(name) = literal.filter(|name| name.starts_with("apim.")) else {
            assert!(
                built.contains(&argument.as_str()),
                "{file} counts `{argument}`: name it in a literal, or list it here"
            );
            continue;
        };
        // `format!("apim.fault.{}", …)` is documented as `apim.fault.<code>`.
        let documented = match name.find('{') {
            Some(open) => format!("{}<", &name[..open]),
            None => name.to_string(),
        };
        for (doc, text) in [("README.md", &readme), ("docs/HOWTO.md", &howto)] {
            assert!(text.contains(&documented), "{file} counts `{name}`, which {doc} does not list");
        }
    }
}

/// Every table of the generated references has rows: a table whose rows the generator could not
/// make (an untagged enum's shapes, which have no value to list) printed a header alone, as
/// CONFIG.md's `Secret` did.
#[test]
fn every_table_of_the_references_has_rows() {
    for (name, text) in [("ERROR-CODES.md", docs::error_code_reference()), ("CONFIG.md", docs::config_reference())] {
        let lines: Vec<&str> = text.lines().collect();
        for (at, line) in lines.iter().enumerate() {
            if line.starts_with("|---") {
                let row = lines.get(at + 1).copied().unwrap_or_default();
                assert!(row.starts_with('|'), "{name}: the table `{}` has no rows", lines[at - 1]);
            }
        }
    }
}

/// The error-code reference's transport table names every response flag and code detail the
/// response phase classifies (README: a stream's idle timeout, `max_stream_duration`, a cluster's
/// `drop_overloads` become transport faults), so an operator who sees the flag in Envoy's access
/// log finds the fault it became.
#[test]
fn the_transport_table_names_every_flag_and_detail_the_classification_reads() {
    let reference = docs::error_code_reference();
    let table: Vec<&str> = reference
        .split("## Transport codes")
        .nth(1)
        .unwrap()
        .lines()
        .filter(|line| line.starts_with("| ") && !line.starts_with("| state") && !line.starts_with("| REQUEST_"))
        .collect();
    let flag_cells: Vec<&str> =
        table.iter().flat_map(|line| line.split('|').nth(1).unwrap().split(',')).map(str::trim).collect();
    for (_, name, _) in apim_filter::transport::FLAGS_READ {
        assert!(flag_cells.contains(&name), "ERROR-CODES.md's transport table lacks the flag {name}: {table:#?}");
    }
    for details in apim_filter::transport::DETAILS_READ {
        if details != apim_filter::transport::FROM_UPSTREAM {
            assert!(table.iter().any(|line| line.contains(details)), "the table lacks the details {details}");
        }
    }
}

/// The README's "Not verified" note on other Envoy versions names every `response.code_details`
/// value the response phase reads: they are what another version could spell differently.
#[test]
fn the_readme_names_every_code_detail_the_response_phase_reads() {
    let readme = common::read_repo_file("README.md");
    let note = readme.split("**Other Envoy versions.**").nth(1).unwrap().split("\n\n").next().unwrap();
    for details in apim_filter::transport::DETAILS_READ {
        assert!(note.contains(&format!("`{details}`")), "the README's note on Envoy versions omits `{details}`: {note}");
    }
}
