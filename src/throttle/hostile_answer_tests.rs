//! Hostile rate-limit service answers: the reference service's answers (`ModelService`)
//! re-encoded with extreme values (codes, limits, units, remaining counts, durations, as many
//! statuses as asked or not) or with their bytes mutated, fed to the cluster engine's reading.
//! Each gives a defined outcome (a grant, a refusal, the service unusable), never a panic.

use prost::Message;

use super::tests::{counter, node, service, take, ModelService, T0};
use super::*;
use crate::host::fuzz::{each_case, mutate_bytes, noise, Rng};
use crate::schema::Counting;

fn extreme_i32(rng: &mut Rng) -> i32 {
    let any = rng.word() as i32;
    *rng.pick(&[0, 1, 2, 3, 7, -1, i32::MIN, i32::MAX, any])
}

fn extreme_u32(rng: &mut Rng) -> u32 {
    let any = rng.word() as u32;
    *rng.pick(&[0, 1, 2, u32::MAX, u32::MAX - 1, any])
}

fn mutate_response(response: &mut rls::RateLimitResponse, rng: &mut Rng) {
    for _ in 0..1 + rng.below(4) {
        let statuses = response.statuses.len();
        match rng.below(9) {
            0 => response.overall_code = extreme_i32(rng),
            1 if statuses > 0 => response.statuses[rng.below(statuses)].code = extreme_i32(rng),
            2 if statuses > 0 => response.statuses[rng.below(statuses)].limit_remaining = extreme_u32(rng),
            3 if statuses > 0 => {
                let any = rng.word() as i64;
                let seconds = *rng.pick(&[0, 1, -1, i64::MIN, i64::MAX, any]);
                let nanos = extreme_i32(rng);
                response.statuses[rng.below(statuses)].duration_until_reset = Some(rls::Duration { seconds, nanos });
            }
            4 if statuses > 0 => {
                let at = rng.below(statuses);
                if let Some(limit) = response.statuses[at].current_limit.as_mut() {
                    limit.requests_per_unit = extreme_u32(rng);
                    limit.unit = extreme_i32(rng);
                }
            }
            5 if statuses > 0 => {
                response.statuses.remove(rng.below(statuses));
            }
            6 if statuses > 0 => {
                let copy = response.statuses[rng.below(statuses)].clone();
                response.statuses.push(copy);
            }
            7 => response.statuses.clear(),
            _ => {}
        }
    }
}

#[test]
fn mutated_service_answers_grant_refuse_or_are_unusable() {
    each_case("rls answers", 1500, 0x4C5, |rng, case| {
        let counting = if rng.chance(2) { Counting::Leased } else { Counting::Strict };
        let service = service(counting);
        let engine = ClusterEngine { service: &service, leases: super::tests::SLOTS };
        let limit = *rng.pick(&[1, 2, 10, 1000, u64::from(u32::MAX), u64::from(u32::MAX) + 1, u64::MAX]);
        let window_s = *rng.pick(&[1, 60, 3600, 86_400, 7, 0, u64::MAX]);
        let counter = counter(limit, window_s);
        let mut store = node();
        let now = T0 + (case as u64 % 120);
        let Step::Call(call, pending) = take(&engine, &mut store, &counter, now) else { return };
        let answered = ModelService::default().answer(&call, now);
        let message = match (&answered, rng.below(5)) {
            (Answer::Grpc { message }, 0) => mutate_bytes(message, rng),
            (_, 1) => noise(rng, 64),
            (Answer::Grpc { message }, _) => match rls::RateLimitResponse::decode(message.as_slice()) {
                Ok(mut response) => {
                    mutate_response(&mut response, rng);
                    response.encode_to_vec()
                }
                Err(_) => message.clone(),
            },
            _ => Vec::new(),
        };
        let later = now + *rng.pick(&[0, 1, 59, 61, 3600]);
        let answer = Answer::Grpc { message };
        // A grant never holds more tokens than were asked for, whatever the service says.
        if let Ok(granted) = read_answer(&answer, pending, &counter) {
            assert!(
                granted.tokens <= pending.requested,
                "case {case}: {} granted of {}",
                granted.tokens,
                pending.requested
            );
        }
        // The answer ends the request's wait: counted, or refused.
        let step = engine.resume_take(&mut store, &counter, pending, &answer, later);
        assert!(!matches!(step, Step::Call(..)), "case {case}: an answer made another call");
        // The node goes on counting after it, whatever the answer was.
        let _ = take(&engine, &mut store, &counter, later);
    });
}
