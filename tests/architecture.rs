//! The layering ARCHITECTURE.md describes holds in the code: every module of `src/` imports only
//! modules below it (no import circle), only `src/filter/` talks to the proxy-wasm ABI, and no
//! source file grows past the size a reader can hold.

// Test code: panicking on a broken fixture is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice)]

mod common;

use std::path::{Path, PathBuf};

/// The modules of `src/`, bottom up: each may import only those before it.
const LAYERS: &[&str] = &[
    "vocab",
    "host",
    "cidr",
    "hashing",
    "websocket",
    "event_stream",
    "pieces",
    "signatures",
    "schema",
    "catalogue",
    "render",
    "routing",
    "conditions",
    "directory",
    "auth",
    "throttle",
    "transport",
    "backend_jwt",
    "observe",
    "config",
    "stream",
    "docs",
    "filter",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without comments and without its inline test module.
fn production_code(text: &str) -> String {
    let mut code = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if trimmed == "#[cfg(test)]" && lines.peek().is_some_and(|next| next.trim_start().starts_with("mod tests {")) {
            break;
        }
        if trimmed.starts_with("//") {
            continue;
        }
        code.push_str(line);
        code.push('\n');
    }
    code
}

#[test]
fn every_module_imports_only_modules_below_it() {
    let src = common::repo_root().join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut violations = Vec::new();
    for path in &files {
        let relative = path.strip_prefix(&src).unwrap();
        let module =
            relative.components().next().unwrap().as_os_str().to_string_lossy().trim_end_matches(".rs").to_string();
        if module == "lib" || relative.file_name().is_some_and(|name| name == "tests.rs") {
            continue;
        }
        let Some(level) = LAYERS.iter().position(|layer| *layer == module) else {
            violations.push(format!("{}: module `{module}` is not in LAYERS", relative.display()));
            continue;
        };
        let code = production_code(&std::fs::read_to_string(path).unwrap());
        for (at, _) in code.match_indices("crate::") {
            let name: String =
                code[at + "crate::".len()..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            if name == module {
                continue;
            }
            match LAYERS.iter().position(|layer| *layer == name) {
                Some(used) if used < level => {}
                Some(_) => {
                    violations.push(format!("{}: `{module}` imports `{name}`, which is above it", relative.display()))
                }
                None => violations.push(format!("{}: unknown module `crate::{name}`", relative.display())),
            }
        }
    }
    assert!(violations.is_empty(), "layering violations:\n{}", violations.join("\n"));
}

#[test]
fn only_the_glue_touches_the_proxy_wasm_abi_and_no_file_outgrows_a_reader() {
    let src = common::repo_root().join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    for path in &files {
        let relative = path.strip_prefix(&src).unwrap();
        let text = std::fs::read_to_string(path).unwrap();
        if !relative.starts_with("filter") {
            assert!(
                !text.contains("wasm_import_module") && !text.contains("proxy_wasm"),
                "{}: only src/filter/ talks to the ABI",
                relative.display()
            );
        }
        let lines = text.lines().count();
        assert!(lines <= 800, "{} has {lines} lines: split it", relative.display());
        assert!(
            text.lines().next().is_some_and(|first| first.starts_with("//!")),
            "{} starts with a `//!` line saying what it owns",
            relative.display()
        );
    }
}

#[test]
fn jsonwebtoken_crypto_provider_is_not_linked_into_the_filter() {
    // The filter builds jsonwebtoken without a provider feature (src/signatures.rs does the
    // cryptography), so every jsonwebtoken function that reaches its provider (`crypto::sign`,
    // `crypto::verify`, `decode`, `encode`, `Jwk::from_encoding_key`, thumbprints) would panic:
    // a dead VM. Their panic message names `CryptoProvider`; if any such call is linked, the
    // message is in the module's data.
    let wasm = std::fs::read(common::wasm_path()).unwrap();
    let needle = b"CryptoProvider";
    assert!(
        !wasm.windows(needle.len()).any(|window| window == needle),
        "the .wasm links jsonwebtoken's crypto provider (a call that panics without one): use src/signatures.rs"
    );
}

#[test]
fn the_filter_stays_under_its_size_budget() {
    // 1.5 MiB (bench/NOTES.md): each Envoy worker's V8 compiles the module, and its memory grows
    // with the code. A change that crosses it pays for itself elsewhere, or does not go in.
    let wasm = std::fs::read(common::wasm_path()).unwrap();
    let budget = 1_572_864;
    assert!(wasm.len() <= budget, "the .wasm is {} bytes, over its budget of {budget}", wasm.len());
}

#[test]
fn the_filter_reads_json_with_one_reader() {
    // serde_json monomorphizes every type's deserializer and its own parser per reader: bytes
    // (`from_slice`), `io::Read` (`from_reader`) and `str` (`from_str`) were three copies in the
    // .wasm. The filter reads JSON as `str`: the pieces and the configuration check UTF-8 once, and
    // JSON held whole goes through `pieces::from_bytes` or `pieces::from_text`. Only `pieces` makes
    // a serde_json reader: its readers take structs from JSON objects only (`pieces::objects`), so
    // serde's readers of structs written as arrays (86 KB) are never compiled in.
    let src = common::repo_root().join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    for path in &files {
        let relative = path.strip_prefix(&src).unwrap();
        let name = relative.file_name().unwrap().to_string_lossy();
        if name.ends_with("tests.rs") || relative.components().any(|part| part.as_os_str() == "tests") {
            continue;
        }
        let code = production_code(&std::fs::read_to_string(path).unwrap());
        let readers: &[&str] = if relative.starts_with("pieces") {
            &["from_slice", "from_reader", "from_value"]
        } else {
            &["from_slice", "from_reader", "from_value", "from_str"]
        };
        for reader in readers {
            for (at, _) in code.match_indices(reader) {
                let (before, after) = (&code[..at], &code[at + reader.len()..]);
                // Called, with its type inferred or named (`from_str::<T>(`).
                let called = after.starts_with('(') || after.starts_with("::<");
                assert!(
                    !called || (!before.ends_with("serde_json::") && !before.ends_with("Deserializer::")),
                    "{}: serde_json's `{reader}(..)` is a second JSON reader in the .wasm: use `pieces::from_bytes` or `pieces::from_text`",
                    relative.display()
                );
            }
        }
    }
}
