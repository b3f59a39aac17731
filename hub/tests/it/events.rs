//! Valid events built by hand for the projection tests: devices with their
//! own origin, seqs and clock, and one builder per body.

use station_proto::ids::Uuid;
use station_proto::v1::Category;
use station_proto::v1::{
    ActivityHeld, ActivityKind, CaseAssessed, CaseClosed, CaseOpened, CaseReopened, CaseSource,
    CaseTransferAccepted, CaseTransferDeclined, CaseTransferRequested, CasesMerged,
    DuplicateDismissed, EventVoided, Gender, GroupSessionHeld, ResourceKind, ResourceLinked, Tier,
    TrainingHeld, TrainingKind, VisitKind, VisitRecorded,
};
use station_proto::{Body, Event};

pub const ZEDANG: &str = "540502001";
pub const CHANGZHU: &str = "540502101";

/// Milliseconds of the first event's device clock: 2025-01-01T00:00:00Z.
pub const EPOCH_MS: i64 = 1_735_689_600_000;

/// The next event id: version 7, in the order events are built, its clock a
/// millisecond after the previous one's from [`EPOCH_MS`] on, so that ids
/// sort as they were made and stay behind every hub clock of the tests.
fn next_event_id() -> Uuid {
    static MADE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    station_proto::ids::v7_at(EPOCH_MS as u64 + n)
}

/// A device log: its origin, its next seq and its hybrid clock.
#[derive(Debug, Clone)]
pub struct Device {
    pub origin: Uuid,
    pub station: String,
    pub author: String,
    pub seq: u64,
    pub hlc: u64,
}

impl Device {
    pub fn new(station: &str, author: &str) -> Self {
        Self {
            origin: Uuid::now_v7(),
            station: station.into(),
            author: author.into(),
            seq: 0,
            hlc: (EPOCH_MS as u64) << 16,
        }
    }

    /// The next event of this device, its hlc one step after `after` and
    /// after its own last.
    pub fn record_after(&mut self, after: u64, body: Body) -> Event {
        self.seq += 1;
        self.hlc = self.hlc.max(after) + 1;
        Event {
            event_id: next_event_id().as_bytes().to_vec(),
            origin_id: self.origin.as_bytes().to_vec(),
            origin_seq: self.seq,
            station_code: self.station.clone(),
            author: self.author.clone(),
            recorded_at_ms: EPOCH_MS + self.seq as i64 * 60_000,
            hlc: self.hlc,
            body: Some(body),
        }
    }

    /// The next event of this device.
    pub fn record(&mut self, body: Body) -> Event {
        self.record_after(0, body)
    }
}

pub fn id_of(event: &Event) -> Uuid {
    Uuid::from_slice(&event.event_id).unwrap()
}

/// An 18-character ID number with a correct check character.
pub fn id_number(birth: &str, serial: u32, female: bool) -> String {
    let serial = serial % 500 * 2 + u32::from(!female);
    let first = format!("540502{birth}{serial:03}");
    station_proto::id_number::with_check_character(&first).expect("17 digits")
}

pub fn opened(
    name: &str,
    serial: u32,
    community: &str,
    tier: Tier,
    categories: &[Category],
    on: &str,
) -> Body {
    Body::CaseOpened(CaseOpened {
        name: name.into(),
        id_number: id_number("19500101", serial, true),
        gender: Gender::Female as i32,
        birth_date: "1950-01-01".into(),
        community_code: community.into(),
        address: "泽当镇 རྩེད་ཐང".into(),
        phone: String::new(),
        language: "bo".into(),
        categories: categories.iter().map(|c| *c as i32).collect(),
        tier: tier as i32,
        source: CaseSource::Outreach as i32,
        opened_on: on.into(),
        file_number: String::new(),
        duplicate_reason: String::new(),
        duplicate_of_stations: Vec::new(),
    })
}

pub fn visit(case: Uuid, on: &str, kind: VisitKind) -> Body {
    Body::VisitRecorded(VisitRecorded {
        case_id: case.as_bytes().to_vec(),
        visit_date: on.into(),
        kind: kind as i32,
        duration_minutes: 30,
        notes: String::new(),
        needs_found: vec![],
    })
}

pub fn assessed(case: Uuid, tier: Tier, last_seen: Uuid, on: &str) -> Body {
    Body::CaseAssessed(CaseAssessed {
        case_id: case.as_bytes().to_vec(),
        tier: tier as i32,
        reason: "预估".into(),
        last_seen_event_id: last_seen.as_bytes().to_vec(),
        assessed_on: on.into(),
    })
}

pub fn closed(case: Uuid, on: &str) -> Body {
    Body::CaseClosed(CaseClosed {
        case_id: case.as_bytes().to_vec(),
        reason: "结案".into(),
        closed_on: on.into(),
    })
}

pub fn reopened(case: Uuid, on: &str) -> Body {
    Body::CaseReopened(CaseReopened {
        case_id: case.as_bytes().to_vec(),
        reason: "重新开案".into(),
        reopened_on: on.into(),
        tier: Tier::Unspecified as i32,
    })
}

pub fn activity(
    community: &str,
    on: &str,
    person_times: i32,
    volunteers: i32,
    volunteer_minutes: i32,
) -> Body {
    Body::ActivityHeld(ActivityHeld {
        held_on: on.into(),
        community_code: community.into(),
        kind: ActivityKind::PartyPublicWelfare as i32,
        title: "党建+公益 བོད".into(),
        participants: person_times,
        person_times,
        volunteers,
        volunteer_minutes,
    })
}

pub fn group_session(community: &str, on: &str, participants: i32) -> Body {
    Body::GroupSessionHeld(GroupSessionHeld {
        group_name: "老年互助小组".into(),
        session_number: 1,
        held_on: on.into(),
        community_code: community.into(),
        participants,
        topic: String::new(),
    })
}

pub fn training(on: &str) -> Body {
    Body::TrainingHeld(TrainingHeld {
        held_on: on.into(),
        kind: TrainingKind::Supervision as i32,
        title: "督导".into(),
        trainees: 2,
        minutes: 120,
    })
}

pub fn resource(case: Option<Uuid>, on: &str, cash_fen: i64, in_kind_fen: i64) -> Body {
    Body::ResourceLinked(ResourceLinked {
        case_id: case.map(|c| c.as_bytes().to_vec()).unwrap_or_default(),
        linked_on: on.into(),
        kind: ResourceKind::Cash as i32,
        source: "民政局".into(),
        cash_fen,
        in_kind_fen,
        description: String::new(),
    })
}

pub fn merged(survivor: Uuid, absorbed: Uuid, on: &str) -> Body {
    Body::CasesMerged(CasesMerged {
        survivor_case_id: survivor.as_bytes().to_vec(),
        absorbed_case_id: absorbed.as_bytes().to_vec(),
        reason: "两部手机离线各建一档".into(),
        merged_on: on.into(),
    })
}

pub fn dismissed(case: Uuid, of: Uuid, on: &str) -> Body {
    Body::DuplicateDismissed(DuplicateDismissed {
        case_id: case.as_bytes().to_vec(),
        duplicate_of_case_id: of.as_bytes().to_vec(),
        reason: "身份证号录错，是两个人".into(),
        dismissed_on: on.into(),
    })
}

pub fn transfer_requested(case: Uuid, to: &str, on: &str) -> Body {
    Body::CaseTransferRequested(CaseTransferRequested {
        case_id: case.as_bytes().to_vec(),
        to_station_code: to.into(),
        reason: "全家迁居".into(),
        requested_on: on.into(),
    })
}

pub fn transfer_accepted(case: Uuid, request: Uuid, community: &str, on: &str) -> Body {
    Body::CaseTransferAccepted(CaseTransferAccepted {
        case_id: case.as_bytes().to_vec(),
        request_id: request.as_bytes().to_vec(),
        community_code: community.into(),
        accepted_on: on.into(),
        note: String::new(),
    })
}

pub fn transfer_declined(case: Uuid, request: Uuid, on: &str) -> Body {
    Body::CaseTransferDeclined(CaseTransferDeclined {
        case_id: case.as_bytes().to_vec(),
        request_id: request.as_bytes().to_vec(),
        reason: "不在本站辖区".into(),
        declined_on: on.into(),
    })
}

pub fn void(target: Uuid) -> Body {
    Body::EventVoided(EventVoided {
        voided_event_id: target.as_bytes().to_vec(),
        reason: "录入错误".into(),
    })
}

pub const C1: &str = "540502001001";
pub const C2: &str = "540502001002";

/// The hand-built scenario: two Zedang devices (a, b) and one Changzhu
/// device (c), their streams, two of the cases, and the devices after it.
pub struct Scenario {
    pub a: Vec<Event>,
    pub b: Vec<Event>,
    pub c: Vec<Event>,
    pub case1: Uuid,
    pub case2: Uuid,
    pub devices: [Device; 3],
}

pub fn scenario() -> Scenario {
    let mut a = Device::new(ZEDANG, "zd-worker-1");
    let mut b = Device::new(ZEDANG, "zd-worker-2");
    let mut c = Device::new(CHANGZHU, "cz-worker-1");
    let mut sa = Vec::new();
    let mut sb = Vec::new();
    let mut sc = Vec::new();
    let case1 = a.record(opened(
        "次仁卓玛 ཚེ་རིང་སྒྲོལ་མ",
        1,
        C1,
        Tier::Key,
        &[Category::Elderly, Category::Dibao],
        "2025-03-03",
    ));
    let case1_id = id_of(&case1);
    // B saw case 1 (pulled) and visits; B's stream reaches the hub first.
    sb.push(b.record_after(case1.hlc, visit(case1_id, "2025-03-05", VisitKind::Home)));
    sa.push(case1);
    sa.push(a.record(visit(case1_id, "2025-03-10", VisitKind::Home)));
    sa.push(a.record(visit(case1_id, "2025-03-20", VisitKind::Phone)));
    sa.push(a.record(visit(case1_id, "2025-04-02", VisitKind::FollowUp)));
    let case2 = a.record(opened(
        "扎西 བཀྲ་ཤིས",
        2,
        C2,
        Tier::HighRisk,
        &[Category::Orphan],
        "2025-03-15",
    ));
    let case2_id = id_of(&case2);
    sa.push(case2);
    let wrong_visit = a.record(visit(case2_id, "2025-03-16", VisitKind::Home));
    let wrong_id = id_of(&wrong_visit);
    sa.push(wrong_visit);
    sa.push(a.record(void(wrong_id)));
    let case3 = a.record(opened(
        "尼玛",
        3,
        C1,
        Tier::General,
        &[Category::Disabled],
        "2025-03-01",
    ));
    let case3_id = id_of(&case3);
    sa.push(case3);
    sa.push(a.record(closed(case3_id, "2025-03-25")));
    let case4 = a.record(opened(
        "达瓦",
        4,
        C2,
        Tier::Key,
        &[Category::Tekun],
        "2025-02-10",
    ));
    let case4_id = id_of(&case4);
    sa.push(case4);
    sa.push(a.record(visit(case4_id, "2025-03-11", VisitKind::Home)));
    sa.push(a.record(void(case4_id)));
    sa.push(a.record(activity(C1, "2025-03-08", 30, 5, 150)));
    let doubled = a.record(activity(C1, "2025-03-09", 40, 2, 60));
    let doubled_id = id_of(&doubled);
    // B voids A's duplicate activity; B's void reaches the hub first.
    sb.push(b.record_after(doubled.hlc, void(doubled_id)));
    sa.push(doubled);
    sa.push(a.record(group_session(C2, "2025-03-12", 8)));
    sa.push(a.record(training("2025-03-20")));
    sa.push(a.record(resource(Some(case1_id), "2025-03-18", 50_000, 25_000)));
    sa.push(a.record(resource(None, "2025-03-19", 10_000, 0)));
    // Changzhu's own activity, and a void of a Zedang event: another
    // station's void does not apply.
    sc.push(c.record(activity("540502101201", "2025-03-08", 12, 1, 30)));
    let first_activity = id_of(&sa[sa.len() - 6]);
    sc.push(c.record(void(first_activity)));
    Scenario {
        a: sa,
        b: sb,
        c: sc,
        case1: case1_id,
        case2: case2_id,
        devices: [a, b, c],
    }
}
