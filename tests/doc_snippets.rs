//! What the user docs show works as shown: every JSON configuration in README.md and
//! docs/HOWTO.md loads through the filter's own loader (the one `on_configure` runs), a fragment
//! (`"backend_jwt": {...}`) as the only member of a configuration, its placeholders filled with
//! the test fixtures; the HOWTO's commands start services on ports the shipped Envoy configs
//! leave free; the README's "Needs:" names every program `make run` and `make test` call;
//! every `cargo build` shown builds the wasm module; every fragment the prose shows inline
//! (`"credentials": {...}`) loads too; and the HOWTO's commands for hashing an API
//! key and making the backend JWT's key do what it says.

// Test code: panicking on a broken fixture is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice)]

mod common;

use apim_filter::config::Config;
use common::read_repo_file;

/// The fenced blocks of `language` in a Markdown text.
fn blocks<'a>(text: &'a str, language: &str) -> Vec<&'a str> {
    let opening = format!("```{language}\n");
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(&opening) {
        let body = &rest[at + opening.len()..];
        let end = body.find("```").expect("a closed block");
        found.push(body[..end].trim());
        rest = &body[end + 3..];
    }
    found
}

/// The placeholders the docs write where a user puts their own values.
fn filled(snippet: &str) -> String {
    let certificate = serde_json::to_string(&read_repo_file("tests/fixtures/keys/rsa-a.crt")).unwrap();
    snippet
        .replace(r#""-----BEGIN CERTIFICATE-----\n...""#, &certificate)
        .replace(r#""<the PEM text of backend-jwt.crt>""#, &certificate)
}

#[test]
fn every_json_configuration_in_the_docs_loads() {
    // The environment the docs tell users to give Envoy.
    std::env::set_var("APIM_BACKEND_JWT_KEY", read_repo_file("tests/fixtures/keys/rsa-a.pem"));
    std::env::set_var("APIM_EVENTHUB_PASSWORD", "admin");
    std::env::set_var("APIM_KM_CLIENT_SECRET", "gateway-secret");
    let mut checked = 0;
    for file in ["README.md", "docs/HOWTO.md"] {
        for snippet in blocks(&read_repo_file(file), "json") {
            let snippet = filled(snippet);
            let json = if snippet.starts_with('{') { snippet.clone() } else { format!("{{{snippet}}}") };
            if let Err(error) = Config::from_json(json.as_bytes()) {
                panic!("{file} shows a configuration the filter refuses: {error}\n{snippet}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 6, "the docs' configurations are found ({checked})");
}

/// The inline code spans of a Markdown text, fenced blocks left out (a span may wrap a line).
fn inline_spans(text: &str) -> Vec<String> {
    let mut prose = String::new();
    for (at, part) in text.split("```").enumerate() {
        if at % 2 == 0 {
            prose.push_str(part);
        }
    }
    prose.replace("``", "").split('`').skip(1).step_by(2).map(|span| span.replace('\n', " ")).collect()
}

/// The prose shows fragments to paste as they are (`"credentials": { "context_headers": false }`,
/// `"observability": {"access_log_encoding": "struct"}`): each that starts with a top-level field
/// loads as the only member of a configuration, as the fenced ones do.
#[test]
fn every_inline_configuration_fragment_in_the_docs_loads() {
    let schema: serde_json::Value = serde_json::from_str(&read_repo_file("docs/config.schema.json")).unwrap();
    let fields: Vec<String> =
        schema["properties"].as_object().unwrap().keys().map(|field| format!("\"{field}\":")).collect();
    let mut checked = 0;
    for file in ["README.md", "docs/HOWTO.md", "docs/CONFIG.md"] {
        for span in inline_spans(&read_repo_file(file)) {
            if !span.contains('{') || !fields.iter().any(|field| span.starts_with(field.as_str())) {
                continue;
            }
            let json = format!("{{{span}}}");
            if let Err(error) = Config::from_json(json.as_bytes()) {
                panic!("{file} shows a fragment the filter refuses: {error}\n{span}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 5, "the docs' inline fragments are found ({checked})");
}

/// Envoy sees a file-based configuration change only as a move into place (inotify's
/// `IN_MOVED_TO`); a `mv` from another directory may cross file systems (a tmpfs `/tmp`) and is
/// then a copy, which Envoy never applies. The HOWTO's update moves within the target's directory.
#[test]
fn the_howto_replaces_a_watched_file_by_a_move_within_its_directory() {
    let howto = read_repo_file("docs/HOWTO.md");
    let moves: Vec<(&str, &str)> = blocks(&howto, "sh")
        .into_iter()
        .flat_map(str::lines)
        .filter_map(|line| line.trim().strip_prefix("mv "))
        .map(|arguments| {
            let words: Vec<&str> = arguments.split_whitespace().collect();
            (words[0], words[1])
        })
        .collect();
    assert!(!moves.is_empty(), "the HOWTO shows the move");
    let directory = |path: &str| std::path::Path::new(path).parent().map(|parent| parent.to_path_buf());
    for (from, to) in moves {
        assert_eq!(directory(from), directory(to), "`mv {from} {to}` may cross file systems");
    }
}

/// The ports a shipped Envoy config listens on (its admin and listeners).
fn listened_ports() -> Vec<u64> {
    let mut ports = Vec::new();
    for file in ["envoy/envoy.yaml", "envoy/examples/ecds/envoy.yaml", "envoy/examples/cluster/envoy.yaml"] {
        let config: serde_yaml::Value = serde_yaml::from_str(&read_repo_file(file)).unwrap();
        let admin = &config["admin"]["address"]["socket_address"]["port_value"];
        ports.extend(admin.as_u64());
        for listener in config["static_resources"]["listeners"].as_sequence().unwrap() {
            ports.extend(listener["address"]["socket_address"]["port_value"].as_u64());
        }
    }
    ports
}

#[test]
fn the_rate_limit_service_of_the_howto_starts_beside_the_shipped_envoy_configs() {
    let howto = read_repo_file("docs/HOWTO.md");
    let command = blocks(&howto, "sh").into_iter().find(|block| block.contains("service_cmd")).expect("the command");
    let listened = listened_ports();
    assert!(listened.contains(&8080) && listened.contains(&8081), "{listened:?}");
    // envoyproxy/ratelimit listens on 8080 (HTTP), 8081 (gRPC) and 6070 (debug) unless told.
    for (variable, default) in [("PORT", 8080), ("GRPC_PORT", 8081), ("DEBUG_PORT", 6070)] {
        let port = command
            .split_whitespace()
            .find_map(|word| word.strip_prefix(&format!("{variable}=")))
            .map_or(default, |port| port.parse().unwrap());
        assert!(!listened.contains(&port), "{variable}={port} is a port the shipped Envoy configs listen on");
        if variable == "GRPC_PORT" {
            assert!(howto.contains(&format!("127.0.0.1:{port}")), "the HOWTO points the cluster at the service's port");
        }
    }
}

/// GitHub's anchor of a heading: lowercase, spaces to `-`, punctuation other than `-` and `_`
/// dropped.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The places a Markdown file can be pointed at: its headings' anchors, and the titles of its
/// headings and of its bold items (`- **Access logs**:`), as prose cites them.
fn places(markdown: &str) -> (Vec<String>, Vec<String>) {
    let mut anchors = Vec::new();
    let mut titles = Vec::new();
    for line in markdown.lines() {
        if let Some(heading) = line.strip_prefix('#').map(|rest| rest.trim_start_matches('#')) {
            anchors.push(anchor(heading));
            titles.push(heading.trim().to_string());
        }
        if let Some(bold) = line.trim_start().strip_prefix("- **").and_then(|rest| rest.split("**").next()) {
            titles.push(bold.trim_end_matches('.').to_string());
        }
    }
    (anchors, titles)
}

/// Every link to a section (`docs/HOWTO.md#count-across-envoy-nodes`, `#observability`) and every
/// citation of one (`docs/HOWTO.md, "Serve a large static directory"`) in the docs and the shipped
/// configs names a section that exists.
#[test]
fn every_section_the_docs_and_configs_point_to_exists() {
    let sources = [
        "README.md",
        "ARCHITECTURE.md",
        "docs/HOWTO.md",
        "envoy/envoy.yaml",
        "envoy/docker-compose.yml",
        "envoy/istio/wasmplugin.yaml",
        "envoy/examples/ecds/envoy.yaml",
        "envoy/examples/cluster/envoy.yaml",
        "envoy/examples/control-plane/envoy.yaml",
    ];
    let mut checked = 0;
    for source in sources {
        let text = read_repo_file(source);
        let folder = std::path::Path::new(source).parent().unwrap();
        // Links: `](target#anchor)`.
        for (at, _) in text.match_indices("](") {
            let link = &text[at + 2..];
            let link = &link[..link.find(')').unwrap()];
            let Some((target, wanted)) = link.split_once('#') else { continue };
            if target.starts_with("http") {
                continue;
            }
            let file = if target.is_empty() { source.to_string() } else { folder.join(target).display().to_string() };
            let file = file.replace("docs/../", "");
            let (anchors, _) = places(&read_repo_file(&file));
            assert!(
                anchors.iter().any(|a| a == wanted),
                "{source} links to {file}#{wanted}, which has no such section"
            );
            checked += 1;
        }
        // Citations: `<file>.md, "<title>"`.
        for (at, _) in text.match_indices(".md, \"") {
            let start = text[..at].rfind(|c: char| c.is_whitespace() || c == '(').map_or(0, |start| start + 1);
            let cited = &text[start..at + 3];
            let title = &text[at + 6..];
            let title = &title[..title.find('"').unwrap()];
            let file = if cited.contains('/') { cited.to_string() } else { folder.join(cited).display().to_string() };
            let (_, titles) = places(&read_repo_file(&file));
            assert!(titles.iter().any(|t| t == title), "{source} cites {file}, \"{title}\", which has no such section");
            checked += 1;
        }
    }
    assert!(checked >= 10, "the links are found ({checked})");
}

/// The recipes `make run` and `make test` run on a fresh machine, with the Makefile's variables
/// expanded: the rules reachable from those two targets.
fn recipes_reached_from(targets: &[&str]) -> Vec<String> {
    let makefile = read_repo_file("Makefile");
    let mut variables: Vec<(String, String)> = Vec::new();
    let expand = |text: &str, variables: &[(String, String)]| {
        let mut text = text.to_string();
        for _ in 0..4 {
            for (name, value) in variables {
                text = text.replace(&format!("$({name})"), value);
            }
        }
        text
    };
    let mut rules: Vec<(Vec<String>, Vec<String>, Vec<String>)> = Vec::new();
    for line in makefile.lines() {
        if let Some((name, value)) = line.split_once(" := ") {
            variables.push((name.trim().to_string(), value.trim().to_string()));
        } else if let Some(recipe) = line.strip_prefix('\t') {
            if let Some(rule) = rules.last_mut() {
                rule.2.push(expand(recipe, &variables));
            }
        } else if let Some((names, prerequisites)) = line.split_once(':').filter(|_| !line.starts_with('#')) {
            if names.starts_with('.') || names.contains('=') {
                continue;
            }
            let names = expand(names, &variables).split_whitespace().map(String::from).collect();
            let prerequisites = expand(prerequisites, &variables).split_whitespace().map(String::from).collect();
            rules.push((names, prerequisites, Vec::new()));
        }
    }
    let mut wanted: Vec<String> = targets.iter().map(|t| t.to_string()).collect();
    let mut seen: Vec<String> = Vec::new();
    let mut recipes = Vec::new();
    while let Some(target) = wanted.pop() {
        if seen.contains(&target) {
            continue;
        }
        seen.push(target.clone());
        for (names, prerequisites, lines) in &rules {
            if names.contains(&target) {
                wanted.extend(prerequisites.iter().cloned());
                recipes.extend(lines.iter().cloned());
                // `$(MAKE) <target>` runs another rule.
                for line in lines {
                    if let Some(rest) = line.split("$(MAKE)").nth(1) {
                        wanted.extend(rest.split_whitespace().filter(|word| !word.starts_with('-')).map(String::from));
                    }
                }
            }
        }
    }
    recipes
}

/// The README's "Needs:" names every program the recipes of `make run` and `make test` call that a
/// fresh machine must bring: `make test` builds envoyproxy/ratelimit with Go and installs Redis
/// with apt-get, which the list left out.
#[test]
fn the_readme_needs_every_program_make_run_and_make_test_call() {
    let readme = read_repo_file("README.md");
    let needs = readme.split("Needs:").nth(1).expect("the README's Needs").split("\n\n").next().unwrap();
    let recipes = recipes_reached_from(&["run", "test"]);
    assert!(recipes.len() >= 8, "the Makefile's recipes are found: {recipes:#?}");
    let programs = [
        ("cargo ", "Rust"),
        ("rustup ", "rustup"),
        ("npm ", "npm"),
        ("python3 ", "Python 3"),
        ("go install", "Go"),
        ("apt-get ", "apt-get"),
    ];
    for (call, named) in programs {
        if recipes.iter().any(|line| line.contains(call)) {
            assert!(
                needs.contains(named),
                "a recipe calls `{call}` but the README's Needs does not name {named}: {needs}"
            );
        }
    }
}

/// Every `cargo build` the README and HOWTO show builds the module they name,
/// `target/wasm32-wasip1/release/apim_filter.wasm`: a plain `cargo build` builds a native library
/// in `target/debug` (the wasm target is not cargo's default here), which Envoy cannot load.
#[test]
fn every_cargo_build_the_docs_show_builds_the_wasm_module() {
    let mut checked = 0;
    for file in ["README.md", "docs/HOWTO.md"] {
        let text = read_repo_file(file);
        for (at, _) in text.match_indices("`cargo build") {
            let command = &text[at + 1..];
            let command = &command[..command.find('`').unwrap()];
            let words: Vec<&str> = command.split_whitespace().collect();
            assert!(
                words.contains(&"--release") && words.windows(2).any(|pair| pair == ["--target", "wasm32-wasip1"]),
                "{file} shows `{command}`, which does not build target/wasm32-wasip1/release/apim_filter.wasm"
            );
            checked += 1;
        }
    }
    assert!(checked >= 1, "the README shows cargo's own build");
}

/// The command lines of the HOWTO's `sh` block that contains `marker`, comments left out.
fn howto_commands(marker: &str) -> Vec<String> {
    let howto = read_repo_file("docs/HOWTO.md");
    let block = blocks(&howto, "sh").into_iter().find(|block| block.contains(marker)).expect("the HOWTO's commands");
    block
        .lines()
        .map(|line| line.split("  #").next().unwrap().trim().to_string())
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .collect()
}

fn shell(command: &str, directory: &std::path::Path, environment: &[(&str, &str)]) -> String {
    let output = std::process::Command::new("sh")
        .args(["-c", command])
        .current_dir(directory)
        .envs(environment.iter().copied())
        .output()
        .expect("run sh");
    assert!(output.status.success(), "`{command}`: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

/// "Hash an API key": each of the HOWTO's commands gives, for the demo's API key, the hash the
/// demo configuration holds (the HOWTO says every recipe that can run here is run by a test).
#[test]
fn the_howtos_api_key_hash_commands_give_the_hash_the_demo_config_holds() {
    let credentials = read_repo_file("envoy/demo/credentials.env");
    let key = credentials.lines().find_map(|line| line.strip_prefix("DEMO_API_KEY=")).unwrap();
    let demo = read_repo_file("envoy/envoy.yaml");
    let hash = demo.split("\"sha256\": \"").nth(1).unwrap().split('"').next().unwrap();
    let commands = howto_commands("sha256sum");
    assert_eq!(commands.len(), 2, "{commands:?}");
    for command in commands {
        let printed = shell(&command, &common::repo_root(), &[("API_KEY", key)]);
        assert_eq!(printed.trim_end_matches('\n'), hash, "`{command}`");
    }
}

/// "Send WSO2's backend JWT": the HOWTO's commands make a key and a certificate the filter signs
/// with (RS256, and ES256 with the HOWTO's EC command), given as its configuration shows.
#[test]
fn the_howtos_backend_jwt_commands_make_a_key_the_filter_signs_with() {
    let scratch = common::Scratch::new("howto-backend-jwt");
    let commands = howto_commands("openssl genpkey");
    let mut ran = 0;
    for command in commands.iter().filter(|command| command.starts_with("openssl ")) {
        shell(command, &scratch.0, &[]);
        ran += 1;
    }
    assert!(ran >= 3, "{commands:?}");
    let howto = read_repo_file("docs/HOWTO.md");
    let ec_command = howto
        .split('`')
        .find(|text| text.starts_with("openssl genpkey -algorithm EC"))
        .expect("the HOWTO's ES256 command");
    shell(&format!("{ec_command} -out backend-jwt-ec.pem"), &scratch.0, &[]);
    // Its certificate, by the HOWTO's certificate command with that key.
    let certificate_command = commands.iter().find(|command| command.starts_with("openssl req ")).unwrap();
    shell(
        &certificate_command
            .replace("backend-jwt.pem", "backend-jwt-ec.pem")
            .replace("backend-jwt.crt", "backend-jwt-ec.crt"),
        &scratch.0,
        &[],
    );
    let snippet = blocks(&howto, "json").into_iter().find(|block| block.contains("backend-jwt.crt")).unwrap();
    let file = |name: &str| serde_json::to_string(&std::fs::read_to_string(scratch.0.join(name)).unwrap()).unwrap();
    for (key, certificate, algorithm) in
        [("backend-jwt.pem", "backend-jwt.crt", "RS256"), ("backend-jwt-ec.pem", "backend-jwt-ec.crt", "ES256")]
    {
        let json = format!(
            "{{{},\"apis\":[]}}",
            snippet
                .replace(r#""<the PEM text of backend-jwt.crt>""#, &file(certificate))
                .replace(r#"{ "env": "APIM_BACKEND_JWT_KEY" }"#, &format!(r#"{{"value": {}}}"#, file(key)))
                .replacen("\"backend_jwt\": {", &format!("\"backend_jwt\": {{\"algorithm\": \"{algorithm}\","), 1)
        );
        if let Err(error) = Config::from_json(json.as_bytes()) {
            panic!("{algorithm} with the key of the HOWTO's commands: {error}\n{json}");
        }
    }
}
