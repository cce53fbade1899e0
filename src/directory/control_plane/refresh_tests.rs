//! Full loads as they run in time: one at a time whatever their length or the clock does, their
//! log's clock, and what a load cut off before its end leaves for the next.

use super::refresh::{self, Fetch};
use super::tests::{control_plane, fixture, load, ok, worker, MemoryStore, NOW};
use crate::host::Answer;

/// Another worker created the due time and took the first load between this one's read and write.
#[test]
fn a_worker_configuring_never_undoes_the_load_another_took() {
    let (cp, mut taken) = (control_plane(50), MemoryStore::default());
    refresh::prepare(&mut taken, &cp);
    assert!(refresh::due(&mut taken, &cp, NOW, 0).is_some());
    let rival = taken.data.get("apim.cp.due").map(|(value, _)| value.clone());
    let mut store = crate::host::testing::RivalWrite { rival, ..Default::default() };
    refresh::prepare(&mut store, &cp);
    assert!(refresh::due(&mut store, &cp, NOW, 0).is_none(), "the other worker loads alone");
}

#[test]
fn a_load_that_outlasts_refresh_s_is_never_joined_by_another() {
    // refresh_s 60, timeout 10 s: every call of this load takes the longest it may (10 s), and
    // taking each answer 25 s more, so the load lasts minutes.
    let cp = control_plane(50);
    let mut store = MemoryStore::default();
    refresh::prepare(&mut store, &cp);
    let mut load = refresh::due(&mut store, &cp, NOW, 0).unwrap();
    let mut now = NOW;
    loop {
        now += 35;
        assert!(refresh::due(&mut store, &cp, now, 0).is_none(), "a second load {} s into the first", now - NOW);
        let fetch = load.fetch;
        if refresh::ingest(&mut store, &cp, &mut load, &ok(fetch), &|_, _| Vec::new(), now, 0).is_none() {
            break;
        }
    }
    assert_eq!(now, NOW + 35 * 9);
    // Over: the next load is due at once (refresh_s has passed since this one started).
    assert!(refresh::due(&mut store, &cp, now, 0).is_none(), "due a second after the end");
    assert!(refresh::due(&mut store, &cp, now + 1, 0).is_some());
}

#[test]
fn a_loads_log_tells_waiting_for_the_control_plane_from_taking_its_answers() {
    // Each answer arrives 300 ms after its call and takes 100 ms to take: of the load's time,
    // 9 x 300 ms is waiting (the last answer's taking is after the log's clock reading).
    let cp = control_plane(50);
    let mut store = MemoryStore::default();
    refresh::prepare(&mut store, &cp);
    let mut clock_ms = NOW * 1000;
    let mut load = refresh::due(&mut store, &cp, NOW, clock_ms).unwrap();
    let mut answers = 0;
    loop {
        clock_ms += 300;
        answers += 1;
        let fetch = load.fetch;
        let next = refresh::ingest(&mut store, &cp, &mut load, &ok(fetch), &|_, _| Vec::new(), NOW, clock_ms);
        assert_eq!(load.waiting_ms(), 300 * answers);
        if next.is_none() {
            break;
        }
        clock_ms += 100;
        load.asked(clock_ms);
    }
    assert_eq!(answers, 9);
    assert_eq!(clock_ms - load.started_ms, 9 * 300 + 8 * 100);
}

#[test]
fn a_load_under_way_when_the_clock_is_stepped_back_is_not_joined_by_another() {
    let cp = control_plane(50);
    let mut store = MemoryStore::default();
    refresh::prepare(&mut store, &cp);
    let mut load = refresh::due(&mut store, &cp, NOW, 0).unwrap();
    // NTP steps the clock back an hour while the first answer is on its way.
    let stepped_back = NOW - 3_600;
    let answer = ok(load.fetch);
    let next = refresh::ingest(&mut store, &cp, &mut load, &answer, &|_, _| Vec::new(), stepped_back, 0);
    assert!(next.is_some(), "the load goes on");
    assert!(refresh::due(&mut store, &cp, stepped_back + 1, 0).is_none(), "held by the load under way");
}

/// A load cut off after writing a changed answer (its VM drained by a configuration change, the
/// call's answer never delivered) leaves that answer written and its fingerprint recorded. The
/// next load finds the same answer unchanged: it must still publish what the cut-off load wrote,
/// or workers keep serving the earlier data until API-M's data changes again.
#[test]
fn what_a_load_cut_off_wrote_is_published_by_the_next_load() {
    let cp = control_plane(50);
    let mut store = MemoryStore::default();
    load(&mut store, &cp, NOW, ok);
    let mut view = worker();
    view.sync(&store, &cp, &[]).unwrap();
    assert!(view.routes.by_label("PizzaShackAPI:1.0.0").is_some());
    // API-M retires PizzaShackAPI: its APIs answer without it.
    let retired = |fetch: Fetch| match fetch {
        Fetch::Apis => {
            let apis = fixture(Fetch::Apis).replacen("\"status\":\"PUBLISHED\"", "\"status\":\"RETIRED\"", 1);
            Answer::Http { status: 200, body: apis.into_bytes() }
        }
        other => ok(other),
    };
    let later = NOW + 600;
    let mut cut_off = refresh::due(&mut store, &cp, later, later * 1000).unwrap();
    assert_eq!(cut_off.fetch, Fetch::Apis);
    assert!(
        refresh::ingest(&mut store, &cp, &mut cut_off, &retired(Fetch::Apis), &|_, _| Vec::new(), later, 0).is_some()
    );
    drop(cut_off);
    // The next load, once the cut-off one's hold has passed, finds every answer as last written.
    let next = later + 3600;
    load(&mut store, &cp, next, retired);
    assert!(view.sync(&store, &cp, &[]).is_some(), "a new generation");
    let pizza = view.routes.by_label("PizzaShackAPI:1.0.0").unwrap();
    assert_eq!(pizza.lifecycle, crate::vocab::Lifecycle::Retired, "the retirement is served");
}

/// An answer refused as garbage writes nothing: the load publishes no new generation for it
/// (workers would rebuild their tables, and drop the policies they learned, at every retry of a
/// control plane that keeps answering garbage for one resource).
#[test]
fn an_answer_refused_as_garbage_publishes_no_generation() {
    let cp = control_plane(50);
    let mut store = MemoryStore::default();
    load(&mut store, &cp, NOW, ok);
    let first = super::store::Meta::read(&store).generation;
    for (index, broken) in [Fetch::Apis, Fetch::Applications, Fetch::Revoked].into_iter().enumerate() {
        let garbage = |fetch: Fetch| {
            if fetch == broken {
                Answer::Http { status: 200, body: b"<html>maintenance</html>".to_vec() }
            } else {
                ok(fetch)
            }
        };
        let later = NOW + 3600 * (index as u64 + 1);
        assert!(load(&mut store, &cp, later, garbage).len() > 1, "{broken:?}: a load ran");
        assert_eq!(super::store::Meta::read(&store).generation, first, "{broken:?} refused: nothing to publish");
    }
}

/// `/block` answered with another document's shape (a list envelope, an error object): the
/// blocking conditions the last good load brought stay, as every other resource's do.
#[test]
fn a_block_answer_of_another_shape_keeps_the_last_good_blocking_conditions() {
    use super::tests::MemoryStore as Store;
    let cp = control_plane(50);
    let block = r#"{"api":["/pizzashack/1.0.0"],"application":["admin:MobileApp"],"user":[],"ip":[],"custom":[],"subscription":[]}"#;
    for wrong in [r#"{"count":0,"list":[],"pagination":null}"#, r#"{"error":"internal"}"#, "{}"] {
        let mut store = Store::default();
        load(&mut store, &cp, NOW, |fetch| match fetch {
            Fetch::Block => Answer::Http { status: 200, body: block.as_bytes().to_vec() },
            other => ok(other),
        });
        load(&mut store, &cp, NOW + 3600, |fetch| match fetch {
            Fetch::Block => Answer::Http { status: 200, body: wrong.as_bytes().to_vec() },
            other => ok(other),
        });
        let mut view = worker();
        view.sync(&store, &cp, &[]);
        assert_eq!(view.blocking().len(), 2, "after /block answered {wrong}");
    }
}
