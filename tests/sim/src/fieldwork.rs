//! Deterministic field work for tests and benchmarks: valid event bodies of
//! one station — case files with valid ID numbers and Chinese and Tibetan
//! names, visits to them, community activities — drawn from a seeded RNG.
//!
//! Invariant: every body produced passes `station_proto::validate::body` for
//! its station on any date after the dates it uses, and refers only to cases
//! the generator opened before; no two case files it opens share an ID
//! number (一人一档: the agent refuses a second open file for one person).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use station_proto::Body;
use station_proto::ids::Uuid;
use station_proto::v1::{
    ActivityHeld, ActivityKind, CaseOpened, CaseSource, Category, Gender, VisitKind, VisitRecorded,
};

/// An 18-character resident ID number with a correct GB 11643 check character, from a
/// 6-digit region code and an 8-digit `YYYYMMDD` birth date.
///
/// # Panics
///
/// If `region` and `birth` are not 14 digits together.
pub fn id_number(region: &str, birth: &str, serial: u32, female: bool) -> String {
    let serial = serial % 500 * 2 + u32::from(!female);
    let first = format!("{region}{birth}{serial:03}");
    station_proto::id_number::with_check_character(&first)
        .expect("a 6-digit region and an 8-digit birth date")
}

const GIVEN: [&str; 8] = [
    "次仁卓玛 ཚེ་རིང་སྒྲོལ་མ",
    "扎西 བཀྲ་ཤིས",
    "尼玛 ཉི་མ",
    "达瓦 ཟླ་བ",
    "格桑 སྐལ་བཟང",
    "卓嘎",
    "白玛 པདྨ",
    "旺堆",
];

/// A generator of one station's field work.
#[derive(Debug)]
pub struct FieldWork {
    /// The 9-digit station code.
    station: String,
    /// Seeded draws, so a seed gives the same work.
    rng: StdRng,
    /// Cases opened so far, to visit.
    cases: Vec<Uuid>,
    /// Serial numbers for ID numbers.
    serial: u32,
    /// The ID numbers given out, so none is given twice.
    issued: std::collections::HashSet<String>,
}

impl FieldWork {
    /// Field work of `station`, drawn from `seed`.
    pub fn new(station: &str, seed: u64) -> Self {
        Self {
            station: station.to_string(),
            rng: StdRng::seed_from_u64(seed),
            cases: Vec::new(),
            serial: 0,
            issued: std::collections::HashSet::new(),
        }
    }

    /// Records the next `n` bodies on `agent`, telling the generator the ids
    /// of the cases it opened. An opening the agent refuses because the
    /// station holds an open file for that person already (another
    /// generator, on a colleague's phone or another thread, drew the same
    /// person) is left out and another body drawn in its place.
    ///
    /// # Errors
    /// Any other refusal or storage error of the agent.
    pub fn record_on(
        &mut self,
        agent: &station_agent::Agent,
        n: usize,
    ) -> Result<(), station_agent::AgentError> {
        let mut recorded = 0;
        while recorded < n {
            let body = self.next_body();
            let is_case = matches!(body, Body::CaseOpened(_));
            match agent.record(body) {
                Ok(done) => {
                    recorded += 1;
                    if is_case {
                        self.opened(done.event_id);
                    }
                }
                Err(station_agent::AgentError::PersonHasOpenFile { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Tells the generator a case was opened (with the id the log gave it).
    pub fn opened(&mut self, case_id: Uuid) {
        self.cases.push(case_id);
    }

    fn community(&mut self) -> String {
        format!("{}{:03}", self.station, self.rng.random_range(1..=11))
    }

    fn date(&mut self) -> String {
        format!(
            "2026-{:02}-{:02}",
            self.rng.random_range(1..=10),
            self.rng.random_range(1..=28)
        )
    }

    /// The next body: a case opening when there are few cases, else mostly
    /// visits, some activities.
    pub fn next_body(&mut self) -> Body {
        let roll = self.rng.random_range(0..100);
        if self.cases.len() < 3 || roll < 15 {
            self.serial += 1;
            let female = self.rng.random_bool(0.5);
            let year = self.rng.random_range(1930..2015);
            let birth = format!(
                "{year}0{}1{}",
                self.rng.random_range(1..=9),
                self.rng.random_range(0..=9)
            );
            let birth_date = format!("{}-{}-{}", &birth[0..4], &birth[4..6], &birth[6..8]);
            let name = GIVEN[self.rng.random_range(0..GIVEN.len())].to_string();
            let mut number = id_number("540502", &birth, self.serial, female);
            while self.issued.contains(&number) {
                self.serial += 1;
                number = id_number("540502", &birth, self.serial, female);
            }
            self.issued.insert(number.clone());
            Body::CaseOpened(CaseOpened {
                name,
                id_number: number,
                gender: if female { Gender::Female } else { Gender::Male } as i32,
                birth_date,
                community_code: self.community(),
                address: "乃东区 སྣེ་གདོང".into(),
                phone: String::new(),
                language: "bo".into(),
                categories: vec![Category::Dibao as i32, Category::Elderly as i32],
                tier: self.rng.random_range(1..=3),
                source: CaseSource::Outreach as i32,
                opened_on: "2026-01-05".into(),
                file_number: String::new(),
                duplicate_reason: String::new(),
                duplicate_of_stations: Vec::new(),
            })
        } else if roll < 85 {
            let case = self.cases[self.rng.random_range(0..self.cases.len())];
            Body::VisitRecorded(VisitRecorded {
                case_id: case.as_bytes().to_vec(),
                visit_date: self.date(),
                kind: VisitKind::Home as i32,
                duration_minutes: self.rng.random_range(10..90),
                notes: "入户走访，了解生活情况 ཁྱིམ་ལ་བཅར་འདྲི".into(),
                needs_found: vec![],
            })
        } else {
            let participants = self.rng.random_range(5..40);
            Body::ActivityHeld(ActivityHeld {
                held_on: self.date(),
                community_code: self.community(),
                kind: ActivityKind::PartyPublicWelfare as i32,
                title: "党建+公益 服务日".into(),
                participants,
                person_times: participants,
                volunteers: 2,
                volunteer_minutes: 240,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;
    use station_proto::validate::{self, Context};

    #[test]
    fn every_body_passes_the_validator_from_its_last_date_on() {
        // The latest date the generator writes, and the hub's today.
        let last = NaiveDate::from_ymd_opt(2026, 10, 28).expect("a real date");
        let contexts = [
            Context::on(last),
            Context::on(station_hub::projections::today_in_china()),
        ];
        let mut work = FieldWork::new("540502101", 3);
        for n in 0..2_000u128 {
            let body = work.next_body();
            for ctx in &contexts {
                let verdict = validate::body(&mut body.clone(), "540502101", ctx);
                assert!(verdict.is_ok(), "{verdict:?}: {body:?}");
            }
            if matches!(body, Body::CaseOpened(_)) {
                work.opened(Uuid::from_u128(n + 1));
            }
        }
    }
}
