//! A control plane replaced under a running Envoy (the old configuration's listener drains), or
//! another one read by a gateway that shares this one's shared data: nothing of one serves the
//! other's requests.

use super::*;

#[test]
fn a_configuration_whose_control_plane_was_replaced_takes_no_load_from_the_new_one() {
    let mut store = MemoryStore::default();
    let first = control_plane(50);
    load(&mut store, &first, NOW, ok);
    // The gateway is pointed at another API-M: its data is dropped, and a load from it is due.
    let other = other_control_plane(600);
    refresh::prepare(&mut store, &other);
    // The old configuration's root context still ticks while its listener drains (up to
    // `drain_time`, ten minutes by default): it must not take the load that would fill the data
    // just emptied, which it would drop at its first answer, leaving the gateway without APIs
    // until the due time it held passed.
    assert!(refresh::due(&mut store, &first, NOW + 1, 0).is_none(), "the draining configuration loads nothing");
    assert!(refresh::due(&mut store, &other, NOW + 1, 0).is_some(), "the new configuration loads at once");
}

#[test]
fn a_configuration_whose_control_plane_was_replaced_remembers_no_lookup_for_the_new_one() {
    let mut store = MemoryStore::default();
    let first = control_plane(50);
    load(&mut store, &first, NOW, ok);
    let other = other_control_plane(600);
    refresh::prepare(&mut store, &other);
    // A request on the draining configuration brings a client id: the old API-M's answer would be
    // remembered in the new one's buckets, where the new configuration would take it for its own
    // (a client of another tenant mapped to an application).
    let mut view = worker();
    let mut context = lookup::Context { control_plane: &first, worker: &mut view, store: &mut store, now: NOW };
    let need = Need { client: Some((KmId(0), "newcomer".into())), api: None, ..Need::default() };
    assert!(matches!(lookup::start(&mut context, &need), Step::Refused(_)), "900900: its control plane is gone");
    // The new configuration asks its own.
    let mut view = worker();
    let mut context = lookup::Context { control_plane: &other, worker: &mut view, store: &mut store, now: NOW };
    assert!(matches!(lookup::start(&mut context, &need), Step::Call(..)));
}

#[test]
fn a_worker_never_serves_another_control_planes_data() {
    let mut store = MemoryStore::default();
    let first = control_plane(50);
    let no_apis = |fetch: Fetch| match fetch {
        Fetch::Apis => Answer::Http { status: 200, body: br#"{"count":0,"list":[]}"#.to_vec() },
        other => ok(other),
    };
    load(&mut store, &first, NOW, no_apis);
    let mut draining = worker();
    draining.sync(&store, &first, &[]);
    // Another control plane is configured in this Envoy (the gateway's replacement, or another
    // gateway whose filter shares the vm_id), and loads PizzaShackAPI and its clients (its
    // tenant's: API-M answers `other.com`'s APIs to its `xWSO2Tenant`).
    let other = other_control_plane(600);
    load(&mut store, &other, NOW + 1, |fetch| match (fetch, ok(fetch)) {
        (Fetch::Apis, Answer::Http { status, body }) => {
            let body = String::from_utf8(body).unwrap().replace("\"carbon.super\"", "\"other.com\"");
            Answer::Http { status, body: body.into_bytes() }
        }
        (_, answer) => answer,
    });
    let trust = super::super::view::Trust { now: NOW + 1, negative_ttl_s: 60 };
    for mut view in [draining, worker()] {
        assert!(view.sync(&store, &first, &[]).is_none(), "another source's generation is not decoded");
        assert!(view.routes.by_label("PizzaShackAPI:1.0.0").is_none(), "the other's API");
        assert!(view.key(&store, &super::super::view::key_of_client("Resident Key Manager", "app1"), trust).is_none());
        assert!(view.app(&store, MOBILE_APP, trust).is_none(), "the other's application");
    }
    let mut view = worker();
    view.sync(&store, &other, &[]);
    assert!(view.routes.by_label("PizzaShackAPI:1.0.0").is_some(), "its own");
}

/// The draining configuration's listener keeps serving for up to `drain_time` (ten minutes by
/// default), and each of its requests that needs a lookup is refused: the log says so now and
/// then, not once per request.
#[test]
fn the_draining_configurations_refused_lookups_log_a_line_now_and_then() {
    use crate::host::testing::{capture_warnings, warnings};
    capture_warnings();
    let mut store = MemoryStore::default();
    let first = control_plane(50);
    load(&mut store, &first, NOW, ok);
    refresh::prepare(&mut store, &other_control_plane(600));
    let need = Need { client: Some((KmId(0), "newcomer".into())), api: None, ..Need::default() };
    for _ in 0..100 {
        let mut view = worker();
        let mut context = lookup::Context { control_plane: &first, worker: &mut view, store: &mut store, now: NOW };
        assert!(matches!(lookup::start(&mut context, &need), Step::Refused(_)));
    }
    let lines = warnings().into_iter().filter(|line| line.contains("no longer the Envoy's")).count();
    assert_eq!(lines, 1, "{:?}", warnings());
}
