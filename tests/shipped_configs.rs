//! The configs we ship are valid: `envoy --mode validate` on envoy/envoy.yaml (which also runs
//! the filter's `on_configure` on its JSON), the docker-compose file's structure (Docker cannot
//! run here), and the Istio WasmPlugin's pluginConfig through the filter's own parser.

// Test code: panicking on a broken fixture is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice)]

mod common;

use std::process::Command;

use apim_filter::config::Config;
use common::{envoy_binary, read_repo_file, repo_root, wasm_path};
use serde::Deserialize;

/// The Envoy version the Makefile installs.
fn pinned_envoy_version() -> String {
    let makefile = read_repo_file("Makefile");
    makefile
        .lines()
        .find_map(|line| line.strip_prefix("ENVOY_VERSION := "))
        .map(|version| version.trim().to_string())
        .expect("ENVOY_VERSION in the Makefile")
}

#[test]
fn demo_envoy_config_validates_with_the_filter_accepting_its_configuration() {
    wasm_path();
    let output = Command::new(envoy_binary())
        .args(["--mode", "validate", "-c", "envoy/envoy.yaml"])
        .current_dir(repo_root())
        .output()
        .expect("run envoy --mode validate");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "validate failed:\n{text}");
    assert!(text.contains("configuration 'envoy/envoy.yaml' OK"), "{text}");
    assert!(text.contains("configuration accepted: 3 APIs"), "the filter parsed the demo config:\n{text}");
    // The guard against self-routing acts before the route is chosen, and the failure policy is
    // chosen deliberately.
    let demo = read_repo_file("envoy/envoy.yaml");
    assert!(demo.contains("early_header_mutation_extensions"), "the early header mutation guard");
    assert!(demo.contains("- remove: x-apim-cluster") && demo.contains("failure_policy: FAIL_RELOAD"));
}

#[test]
fn installed_envoy_is_the_pinned_version() {
    let output = Command::new(envoy_binary()).arg("--version").output().expect("envoy --version");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains(&format!("/{}/", pinned_envoy_version())), "{text}");
}

#[test]
fn docker_compose_runs_the_same_envoy_with_the_demo_config_and_filter() {
    let compose: serde_yaml::Value =
        serde_yaml::from_str(&read_repo_file("envoy/docker-compose.yml")).expect("compose YAML");
    let envoy = &compose["services"]["envoy"];
    assert_eq!(envoy["image"].as_str(), Some(format!("envoyproxy/envoy:v{}", pinned_envoy_version()).as_str()));
    let volumes: Vec<&str> =
        envoy["volumes"].as_sequence().expect("volumes").iter().filter_map(|v| v.as_str()).collect();
    let working_dir = envoy["working_dir"].as_str().expect("working_dir");
    let command: Vec<&str> =
        envoy["command"].as_sequence().expect("command").iter().filter_map(|v| v.as_str()).collect();
    let config_at = command.iter().position(|arg| *arg == "-c").map(|i| command[i + 1]).expect("-c in command");
    let mounted = |host: &str| -> Option<&str> {
        volumes.iter().find_map(|volume| {
            let mut parts = volume.split(':');
            (parts.next() == Some(host)).then(|| parts.next()).flatten()
        })
    };
    assert_eq!(mounted("./envoy.yaml"), Some(config_at), "the mounted config is the one Envoy reads");
    let wasm_in_container = mounted("../target/wasm32-wasip1/release/apim_filter.wasm").expect("the filter is mounted");
    // envoy.yaml names the filter relative to the working directory.
    let demo = read_repo_file("envoy/envoy.yaml");
    let relative = demo
        .lines()
        .find_map(|line| line.split("filename: ").nth(1))
        .map(|rest| rest.trim_end_matches([' ', '}']).trim())
        .expect("wasm filename in envoy.yaml");
    assert_eq!(format!("{working_dir}/{relative}"), wasm_in_container);
    assert!(repo_root().join("envoy").join("../target/wasm32-wasip1/release/apim_filter.wasm").exists());
}

#[test]
fn istio_manifests_are_well_formed_the_plugin_config_is_accepted_and_a_client_cannot_route_itself() {
    let text = read_repo_file("envoy/istio/wasmplugin.yaml");
    let documents: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|document| serde_yaml::Value::deserialize(document).expect("YAML"))
        .collect();
    let kind = |name: &str| {
        documents
            .iter()
            .find(|document| document["kind"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("no {name} in the Istio manifests"))
    };
    let plugin = kind("WasmPlugin");
    assert_eq!(plugin["apiVersion"].as_str(), Some("extensions.istio.io/v1alpha1"));
    assert_eq!(plugin["spec"]["phase"].as_str(), Some("AUTHN"));
    assert_eq!(plugin["spec"]["failStrategy"].as_str(), Some("FAIL_CLOSE"), "chosen deliberately");
    // The secret comes from the proxy's environment, never from the manifest.
    let env = &plugin["spec"]["vmConfig"]["env"][0];
    assert_eq!(env["valueFrom"].as_str(), Some("HOST"));
    let variable = env["name"].as_str().expect("an env variable");
    assert!(!text.contains("client_secret: \""), "no inline secret");
    std::env::set_var(variable, "from-the-proxy-environment");
    let json = serde_json::to_vec(&plugin["spec"]["pluginConfig"]).expect("pluginConfig as JSON");
    let config = Config::from_json(&json).unwrap_or_else(|error| panic!("{error}"));
    assert!(config.warnings().is_empty(), "{:?}", config.warnings());
    // The rate-limit service's cluster is the gateway's cluster for the declared gRPC service.
    let service = config.throttle.rate_limit_service.as_ref().expect("cluster-wide throttling");
    let entry = kind("ServiceEntry");
    let host = entry["spec"]["hosts"][0].as_str().expect("host");
    let port = &entry["spec"]["ports"][0];
    assert_eq!(port["protocol"].as_str(), Some("GRPC"), "HTTP/2 for gRPC");
    assert_eq!(service.cluster, format!("outbound|{}||{host}", port["number"].as_u64().unwrap()));
    assert_eq!(kind("DestinationRule")["spec"]["host"].as_str(), Some(host));
    // The guard removes client copies of both routing headers before any other filter.
    let guard = kind("EnvoyFilter");
    let patch = &guard["spec"]["configPatches"][0];
    assert_eq!(patch["applyTo"].as_str(), Some("NETWORK_FILTER"));
    let extension = &patch["patch"]["value"]["typed_config"]["early_header_mutation_extensions"][0];
    let removed: Vec<&str> = extension["typed_config"]["mutations"]
        .as_sequence()
        .expect("mutations")
        .iter()
        .filter_map(|mutation| mutation["remove"].as_str())
        .collect();
    assert!(removed.contains(&"x-apim-cluster") && removed.contains(&"x-apim-api"), "{removed:?}");
    // The routes bind to a Gateway the manifests define (an Istio install defines none), on the
    // workload the plugin runs in.
    let routes = kind("VirtualService");
    for bound in routes["spec"]["gateways"].as_sequence().expect("the gateways the routes bind to") {
        let (namespace, name) = bound.as_str().and_then(|bound| bound.split_once('/')).expect("<namespace>/<name>");
        let gateway = documents
            .iter()
            .find(|document| {
                document["kind"].as_str() == Some("Gateway")
                    && document["metadata"]["name"].as_str() == Some(name)
                    && document["metadata"]["namespace"].as_str() == Some(namespace)
            })
            .unwrap_or_else(|| panic!("the routes bind to {namespace}/{name}, which no Gateway in the manifests is"));
        assert_eq!(gateway["spec"]["selector"], plugin["spec"]["selector"]["matchLabels"], "the plugin's workload");
        assert!(
            gateway["spec"]["servers"].as_sequence().expect("servers").iter().any(|server| server["port"]["protocol"]
                .as_str()
                .is_some_and(|protocol| ["HTTP", "HTTPS"].contains(&protocol))),
            "an HTTP server"
        );
    }
    // Every API's route needs the header only the filter sets, with that API's label.
    for api in &config.routes.apis {
        let label = format!("{}:{}", api.name, api.version);
        let matched = routes["spec"]["http"].as_sequence().expect("http routes").iter().any(|route| {
            route["match"].as_sequence().is_some_and(|matches| {
                matches.iter().all(|m| m["headers"]["x-apim-api"]["exact"].as_str() == Some(label.as_str()))
            })
        });
        assert!(matched, "no route for {label} guarded by x-apim-api");
    }
}

#[test]
fn the_cluster_profile_runs_redis_the_pinned_rate_limit_service_and_two_gateways_on_the_cluster_example() {
    let compose: serde_yaml::Value =
        serde_yaml::from_str(&read_repo_file("envoy/docker-compose.yml")).expect("compose YAML");
    let services = &compose["services"];
    let in_profile = |name: &str| {
        let service = &services[name];
        assert!(
            service["profiles"].as_sequence().is_some_and(|p| p.iter().any(|p| p.as_str() == Some("cluster"))),
            "{name} is in the cluster profile"
        );
        service
    };
    // The service image is the commit the Makefile builds for the tests.
    let makefile = read_repo_file("Makefile");
    let version = makefile.lines().find_map(|line| line.strip_prefix("RATELIMIT_VERSION := ")).expect("version");
    let commit = version.trim().rsplit('-').next().expect("a pseudo-version ends in the commit");
    let ratelimit = in_profile("ratelimit");
    assert_eq!(ratelimit["image"].as_str(), Some(format!("envoyproxy/ratelimit:{}", &commit[..8]).as_str()));
    let env = &ratelimit["environment"];
    let redis_host = env["REDIS_URL"].as_str().expect("REDIS_URL").split(':').next().unwrap();
    in_profile(redis_host);
    assert_eq!(ratelimit["depends_on"][redis_host]["condition"].as_str(), Some("service_healthy"));
    let config_dir = format!(
        "{}/{}/config",
        env["RUNTIME_ROOT"].as_str().expect("RUNTIME_ROOT"),
        env["RUNTIME_SUBDIRECTORY"].as_str().expect("RUNTIME_SUBDIRECTORY")
    );
    let volumes: Vec<&str> = ratelimit["volumes"].as_sequence().unwrap().iter().filter_map(|v| v.as_str()).collect();
    assert!(volumes.contains(&format!("./ratelimit/config:{config_dir}:ro").as_str()), "{volumes:?}");
    assert!(repo_root().join("envoy/ratelimit/config/apim.yaml").exists());
    for gateway in ["gateway-1", "gateway-2"] {
        let volumes: Vec<&str> =
            in_profile(gateway)["volumes"].as_sequence().unwrap().iter().filter_map(|v| v.as_str()).collect();
        assert!(volumes.contains(&"./examples/cluster/envoy.yaml:/etc/envoy/envoy.yaml:ro"), "{volumes:?}");
    }

    // The example validates, the filter accepts its configuration, and that configuration counts
    // on an HTTP/2 cluster of the file, at the service image's gRPC port (8081) and the domain the
    // shipped service configuration declares.
    let output = Command::new(envoy_binary())
        .args(["--mode", "validate", "-c", "envoy/examples/cluster/envoy.yaml"])
        .current_dir(repo_root())
        .output()
        .expect("run envoy --mode validate");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success() && text.contains("counting across nodes on cluster `ratelimit`"), "{text}");
    let example: serde_yaml::Value =
        serde_yaml::from_str(&read_repo_file("envoy/examples/cluster/envoy.yaml")).expect("example YAML");
    let filter = &example["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
        ["http_filters"][0]["typed_config"]["config"]["configuration"]["value"];
    let config = Config::from_json(filter.as_str().expect("filter configuration").as_bytes()).unwrap();
    let service = config.throttle.rate_limit_service.as_ref().expect("a rate-limit service");
    let cluster = example["static_resources"]["clusters"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|cluster| cluster["name"].as_str() == Some(service.cluster.as_str()))
        .expect("the service's cluster is defined");
    assert!(cluster["typed_extension_protocol_options"].as_mapping().is_some(), "HTTP/2 for gRPC");
    let address =
        &cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"];
    assert_eq!((address["address"].as_str(), address["port_value"].as_u64()), (Some("ratelimit"), Some(8081)));
    let domain: serde_yaml::Value = serde_yaml::from_str(&read_repo_file("envoy/ratelimit/config/apim.yaml")).unwrap();
    assert_eq!(domain["domain"].as_str(), Some(service.domain.as_str()));
}

#[test]
fn the_control_plane_example_validates_and_reads_its_password_from_the_environment() {
    let output = Command::new(envoy_binary())
        .args(["--mode", "validate", "-c", "envoy/examples/control-plane/envoy.yaml"])
        .env("APIM_EVENTHUB_PASSWORD", "from-the-environment")
        .current_dir(repo_root())
        .output()
        .expect("run envoy --mode validate");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success() && text.contains("from the WSO2 control plane at cluster `apim`"), "{text}");
    assert!(!text.contains("from-the-environment"), "the password is never logged");
    let example = read_repo_file("envoy/examples/control-plane/envoy.yaml");
    assert!(!example.contains("\"password\": \""), "no inline password in the example");
    // A full load's answers are buffered whole and freed; the example has Envoy give those pages
    // back (the bench's control-plane memory is measured with the same setting).
    let bootstrap: serde_yaml::Value = serde_yaml::from_str(&example).unwrap();
    let release = &bootstrap["memory_allocator_manager"];
    assert!(release["bytes_to_release"].as_u64().is_some_and(|bytes| bytes > 0), "{release:?}");
    assert!(release["memory_release_interval"].as_str().is_some(), "{release:?}");
    // Its backends are DNS clusters behind their own host names: the route sends each its host, as
    // WSO2's gateway does, not the host the client called the gateway by.
    let routes = &bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
        ["route_config"]["virtual_hosts"][0]["routes"];
    let routed = routes.as_sequence().unwrap().iter().find(|route| route["route"]["cluster_header"].is_string());
    assert_eq!(routed.expect("the routed route")["route"]["auto_host_rewrite"].as_bool(), Some(true));
}

/// README's "Using it" has users route on the filter's header with `auto_host_rewrite: true`, and
/// points them at the shipped configs to copy: each of them routes so, or a copy pointed at a DNS
/// backend would send it the host the client called the gateway by, not the backend's own.
#[test]
fn every_shipped_gateway_routes_on_the_filters_header_with_the_backends_host() {
    let readme = read_repo_file("README.md");
    assert!(readme.contains("`route: { cluster_header: x-apim-cluster, auto_host_rewrite: true }`"));
    for path in [
        "envoy/envoy.yaml",
        "envoy/examples/ecds/envoy.yaml",
        "envoy/examples/cluster/envoy.yaml",
        "envoy/examples/control-plane/envoy.yaml",
    ] {
        let bootstrap: serde_yaml::Value = serde_yaml::from_str(&read_repo_file(path)).unwrap();
        let routes = &bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
            ["route_config"]["virtual_hosts"][0]["routes"];
        let routed = routes.as_sequence().unwrap().iter().find(|route| route["route"]["cluster_header"].is_string());
        let route = &routed.unwrap_or_else(|| panic!("{path}: no route on the filter's header"))["route"];
        assert_eq!(route["cluster_header"].as_str(), Some("x-apim-cluster"), "{path}");
        assert_eq!(route["auto_host_rewrite"].as_bool(), Some(true), "{path}");
    }
}

/// The control-plane example tells users how many places name API-M's host besides the issuer:
/// one left unchanged (the cluster's `sni`, an `authority`) sends API-M the example's host.
#[test]
fn the_control_plane_example_names_every_place_that_holds_api_ms_host() {
    let example = read_repo_file("envoy/examples/control-plane/envoy.yaml");
    let places = example
        .lines()
        .filter(|line| !line.trim_start().starts_with('#') && !line.contains("\"issuer\""))
        .map(|line| line.matches("apim.example.com").count())
        .sum::<usize>();
    assert_eq!(places, 4);
    assert!(example.contains("# Change `apim.example.com` (four places: the two `authority` fields, the `apim` cluster's address\n# and its `sni`)"));
}

/// docs/HOWTO.md has users copy `memory_allocator_manager` from these examples for large
/// directories, with the figures the bench measured using the same values.
#[test]
fn the_examples_for_large_directories_give_freed_pages_back_as_the_bench_measured() {
    let bench = read_repo_file("bench/directory.py");
    assert!(
        bench.contains(r#"{"bytes_to_release": 8 * 1024 * 1024, "memory_release_interval": "1s"}"#),
        "the bench's setting changed: change the examples and docs/HOWTO.md with it"
    );
    for path in ["envoy/examples/control-plane/envoy.yaml", "envoy/examples/ecds/envoy.yaml"] {
        let bootstrap: serde_yaml::Value = serde_yaml::from_str(&read_repo_file(path)).unwrap();
        let release = &bootstrap["memory_allocator_manager"];
        assert_eq!(release["bytes_to_release"].as_u64(), Some(8 * 1024 * 1024), "{path}: {release:?}");
        assert_eq!(release["memory_release_interval"].as_str(), Some("1s"), "{path}: {release:?}");
    }
}

#[test]
fn the_istio_stats_tags_are_the_shipped_envoy_configs() {
    let envoy: serde_yaml::Value = serde_yaml::from_str(&read_repo_file("envoy/envoy.yaml")).unwrap();
    let istio = read_repo_file("envoy/istio/wasmplugin.yaml");
    let filter = istio
        .split("\n---\n")
        .map(|doc| serde_yaml::from_str::<serde_yaml::Value>(doc).unwrap())
        .find(|doc| doc["metadata"]["name"].as_str() == Some("apim-stats-tags"))
        .expect("the stats-tags EnvoyFilter");
    let tags = &filter["spec"]["configPatches"][0]["patch"]["value"]["stats_config"]["stats_tags"];
    assert!(tags.as_sequence().is_some_and(|tags| tags.len() == 7), "{tags:?}");
    assert_eq!(tags, &envoy["stats_config"]["stats_tags"]);
}

/// Every shipped gateway takes the client's address (what IP blocking conditions, a JWT API key's
/// `permittedIP` and client-IP policies read) from the connection, never from an
/// `X-Forwarded-For` the client sends: without `use_remote_address`, Envoy takes it from that
/// header, and any client names its own address (`tests/http_semantics.rs` shows it).
#[test]
fn every_shipped_gateway_takes_the_clients_address_from_the_connection() {
    let configs = [
        "envoy/envoy.yaml",
        "envoy/examples/ecds/envoy.yaml",
        "envoy/examples/cluster/envoy.yaml",
        "envoy/examples/control-plane/envoy.yaml",
    ];
    for path in configs {
        let yaml: serde_yaml::Value = serde_yaml::from_str(&read_repo_file(path)).unwrap();
        let listeners = yaml["static_resources"]["listeners"].as_sequence().expect("listeners");
        let gateway = listeners.iter().find(|listener| listener["name"].as_str() == Some("gateway")).expect(path);
        let manager = &gateway["filter_chains"][0]["filters"][0]["typed_config"];
        assert_eq!(manager["stat_prefix"].as_str(), Some("gateway"), "{path}");
        assert_eq!(manager["use_remote_address"].as_bool(), Some(true), "{path}");
    }
}
