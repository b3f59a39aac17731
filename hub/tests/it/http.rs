//! The bureau's HTTP side on a real hub: events pushed over `Sync`, then
//! read as JSON (the same numbers `Query` answers), as CSV and XLSX
//! ledgers, and on the dashboard behind the login; who may read what.

use std::net::SocketAddr;

use crate::events::*;
use crate::fixtures::{Hub, authorized};
use serde_json::Value;
use station_proto::v1::{
    Category, GetCaseloadRequest, GetDuplicatesRequest, GetIndicatorsRequest, GetOverdueRequest,
    GetQuarantineRequest, GetSyncHealthRequest, Tier,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

impl Hub {
    pub(crate) async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        request(self.http, "GET", path, headers, b"").await
    }

    pub(crate) async fn get_as(&self, path: &str, token: &str) -> Reply {
        let bearer = format!("Bearer {token}");
        self.get(path, &[("Authorization", &bearer)]).await
    }
}

/// An HTTP response as read off the socket.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Reply {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8(self.body.clone()).unwrap()
    }

    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// One HTTP/1.1 exchange on a fresh connection.
pub(crate) async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    try_request(addr, method, path, headers, body)
        .await
        .expect("the connection failed")
}

/// One HTTP/1.1 exchange on a fresh connection; `None` when the connection
/// fails or is closed before a whole answer.
pub(crate) async fn try_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Option<Reply> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.ok()?;
    stream.write_all(body).await.ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.ok()?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8(raw[..split].to_vec()).unwrap();
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        let mut decoded = Vec::new();
        let mut rest = &body[..];
        loop {
            let end = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let size = usize::from_str_radix(std::str::from_utf8(&rest[..end]).unwrap().trim(), 16)
                .unwrap();
            if size == 0 {
                break;
            }
            decoded.extend_from_slice(&rest[end + 2..end + 2 + size]);
            rest = &rest[end + 2 + size + 2..];
        }
        body = decoded;
    }
    Some(Reply {
        status,
        headers,
        body,
    })
}

pub(crate) struct Tokens {
    pub(crate) bureau: String,
    pub(crate) a: String,
    pub(crate) c: String,
}

/// The scenario of `query.rs`, pushed through `Sync` by three devices.
pub(crate) async fn filled() -> (Hub, Scenario, Tokens) {
    fill(Hub::start().await).await
}

/// [`filled`] on a hub the caller started.
pub(crate) async fn fill(hub: Hub) -> (Hub, Scenario, Tokens) {
    let enroll = |station: &str, name: &str| {
        station_hub::auth::enroll_device(&hub.store, station, name)
            .unwrap()
            .bearer
    };
    let tokens = Tokens {
        bureau: station_hub::auth::enroll_bureau(&hub.store, "山南市民政局")
            .unwrap()
            .bearer,
        a: enroll(ZEDANG, "泽当-1"),
        c: enroll(CHANGZHU, "昌珠-1"),
    };
    let b = enroll(ZEDANG, "泽当-2");
    let s = scenario();
    hub.push(&b, &s.b).await;
    hub.push(&tokens.c, &s.c).await;
    hub.push(&tokens.a, &s.a).await;
    hub.projected().await;
    (hub, s, tokens)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_answers_are_the_query_answers() {
    let (hub, s, tokens) = filled().await;
    let mut query = hub.query();

    let grpc = query
        .get_indicators(authorized(
            GetIndicatorsRequest {
                period: "2025-03".into(),
                stations: vec![],
            },
            &tokens.bureau,
        ))
        .await
        .unwrap()
        .into_inner();
    let reply = hub
        .get_as("/api/indicators?period=2025-03", &tokens.bureau)
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(
        reply
            .header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    let json = reply.json();
    assert_eq!(
        json["computed_through_hub_seq"],
        grpc.computed_through_hub_seq
    );
    let rows = json["rows"].as_array().unwrap();
    assert_eq!(rows.len(), grpc.rows.len());
    for (row, expected) in rows.iter().zip(&grpc.rows) {
        assert_eq!(row["station_code"], expected.station_code.as_str());
        assert_eq!(row["station_name"], expected.station_name.as_str());
        assert_eq!(row["complete"], expected.complete);
        let values = row["values"].as_array().unwrap();
        assert_eq!(values.len(), expected.values.len());
        for (value, want) in values.iter().zip(&expected.values) {
            assert_eq!(value["metric"], want.metric.as_str());
            assert_eq!(value["raw"], want.raw, "{}", want.metric);
            assert_eq!(value["value"].as_f64().unwrap(), want.value);
            assert_eq!(value["target"].as_i64(), want.target);
        }
    }
    let zedang = rows.iter().find(|r| r["station_code"] == ZEDANG).unwrap();
    assert_eq!(zedang["station_name_bo"], "རྩེད་ཐང");

    let two = hub
        .get_as(
            &format!("/api/indicators?period=2025-Q1&station={ZEDANG}&station={CHANGZHU}"),
            &tokens.bureau,
        )
        .await
        .json();
    assert_eq!(two["rows"].as_array().unwrap().len(), 2);
    assert_eq!(two["period"], "2025-Q1");

    let caseload = query
        .get_caseload(authorized(
            GetCaseloadRequest { stations: vec![] },
            &tokens.bureau,
        ))
        .await
        .unwrap()
        .into_inner();
    let json = hub.get_as("/api/caseload", &tokens.bureau).await.json();
    for expected in &caseload.stations {
        let got = json["stations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["station_code"] == expected.station_code.as_str())
            .unwrap();
        assert_eq!(got["open_cases"], expected.open_cases);
        assert_eq!(got["high_risk"], expected.high_risk);
    }
    assert_eq!(
        json["cells"].as_array().unwrap().len(),
        caseload.cells.len()
    );

    let overdue = query
        .get_overdue(authorized(
            GetOverdueRequest {
                as_of: "2025-04-20".into(),
                stations: vec![],
                limit: 0,
            },
            &tokens.bureau,
        ))
        .await
        .unwrap()
        .into_inner();
    let json = hub
        .get_as("/api/overdue?as_of=2025-04-20", &tokens.bureau)
        .await
        .json();
    let cases = json["cases"].as_array().unwrap();
    assert_eq!(cases.len(), overdue.cases.len());
    assert_eq!(cases[0]["case_id"], s.case2.to_string());
    assert_eq!(cases[0]["days_overdue"], overdue.cases[0].days_overdue);
    assert_eq!(cases[0]["due_on"], overdue.cases[0].due_on.as_str());

    let health = query
        .get_sync_health(authorized(
            GetSyncHealthRequest { stations: vec![] },
            &tokens.bureau,
        ))
        .await
        .unwrap()
        .into_inner();
    let json = hub.get_as("/api/sync-health", &tokens.bureau).await.json();
    for expected in &health.stations {
        let got = json["stations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["station_code"] == expected.station_code.as_str())
            .unwrap();
        assert_eq!(got["events_logged"], expected.events_logged);
        assert_eq!(got["voided_events"], expected.voided_events);
        assert_eq!(got["held_events"], expected.held_events);
    }

    let conflicts = hub.get_as("/api/conflicts", &tokens.bureau).await;
    assert_eq!(conflicts.status, 200);
    assert!(conflicts.json()["conflicts"].as_array().unwrap().is_empty());
    let quarantine = hub.get_as("/api/quarantine", &tokens.bureau).await;
    assert_eq!(quarantine.status, 200);
    assert_eq!(quarantine.json()["total"], 0);

    let timeline = hub
        .get_as(&format!("/api/cases/{}/timeline", s.case2), &tokens.bureau)
        .await;
    assert_eq!(timeline.status, 200, "{}", timeline.text());
    let voided: Vec<bool> = timeline.json()["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["voided"].as_bool().unwrap())
        .collect();
    assert_eq!(voided, [false, true, false]);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_json_with_the_right_status() {
    let (hub, s, tokens) = filled().await;
    let error = |reply: &Reply| reply.json()["error"].as_str().unwrap().to_string();

    let anonymous = hub.get("/api/indicators?period=2025-03", &[]).await;
    assert_eq!(anonymous.status, 401);
    assert!(!error(&anonymous).is_empty());
    let wrong = hub
        .get_as(
            "/api/caseload",
            "0123456789abcdef.00112233445566778899aabbccddeeff",
        )
        .await;
    assert_eq!(wrong.status, 401, "{}", wrong.text());

    let other = hub
        .get_as(
            &format!("/api/indicators?period=2025-03&station={ZEDANG}"),
            &tokens.c,
        )
        .await;
    assert_eq!(other.status, 403);
    assert!(error(&other).contains(ZEDANG), "{}", error(&other));
    let other_case = hub
        .get_as(&format!("/api/cases/{}/timeline", s.case2), &tokens.c)
        .await;
    // Another station's case reads exactly as a case that does not exist.
    let unknown = station_proto::ids::Uuid::now_v7();
    let absent = hub
        .get_as(&format!("/api/cases/{unknown}/timeline"), &tokens.c)
        .await;
    assert_eq!(other_case.status, 404);
    assert_eq!(absent.status, 404);
    assert_eq!(
        error(&other_case).replace(&s.case2.to_string(), "ID"),
        error(&absent).replace(&unknown.to_string(), "ID")
    );
    let other_report = hub
        .get_as(&format!("/reports/{ZEDANG}/2025-03.csv"), &tokens.c)
        .await;
    assert_eq!(other_report.status, 403);

    let own = hub
        .get_as("/api/indicators?period=2025-03", &tokens.a)
        .await;
    assert_eq!(own.status, 200);
    let rows = own.json()["rows"].as_array().unwrap().clone();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["station_code"], ZEDANG);

    let bad_period = hub
        .get_as("/api/indicators?period=2025-13", &tokens.bureau)
        .await;
    assert_eq!(bad_period.status, 400);
    assert!(
        error(&bad_period).contains("period"),
        "{}",
        error(&bad_period)
    );
    let no_period = hub.get_as("/api/indicators", &tokens.bureau).await;
    assert_eq!(no_period.status, 400);
    let bad_date = hub
        .get_as("/api/overdue?as_of=2025-4-1", &tokens.bureau)
        .await;
    assert_eq!(bad_date.status, 400);
    let bad_station = hub.get_as("/api/caseload?station=12", &tokens.bureau).await;
    assert_eq!(bad_station.status, 400);
    let bad_case = hub
        .get_as("/api/cases/not-a-uuid/timeline", &tokens.bureau)
        .await;
    assert_eq!(bad_case.status, 400);
    let unknown_case = hub
        .get_as(
            "/api/cases/00000000-0000-7000-8000-000000000000/timeline",
            &tokens.bureau,
        )
        .await;
    assert_eq!(unknown_case.status, 404);
    let bad_format = hub
        .get_as(&format!("/reports/{ZEDANG}/2025-03.pdf"), &tokens.bureau)
        .await;
    assert_eq!(bad_format.status, 400);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledgers_are_csv_with_bom_and_xlsx() {
    let (hub, _s, tokens) = filled().await;
    let csv = hub
        .get_as(&format!("/reports/{ZEDANG}/2025-03.csv"), &tokens.bureau)
        .await;
    assert_eq!(csv.status, 200, "{}", csv.text());
    assert!(csv.header("content-type").unwrap().starts_with("text/csv"));
    assert!(csv.body.starts_with(&[0xEF, 0xBB, 0xBF]), "UTF-8 BOM first");
    let text = csv.text();
    let mut lines = text.trim_start_matches('\u{feff}').lines();
    assert_eq!(
        lines.next().unwrap(),
        "指标,单位,完成数,目标数,完成率,数据完整至"
    );
    let lines: Vec<&str> = lines.collect();
    let line = |label: &str| {
        *lines
            .iter()
            .find(|l| l.starts_with(&format!("{label},")))
            .unwrap_or_else(|| panic!("{label} missing from {text}"))
    };
    assert!(line("入户走访(户次)").starts_with("入户走访(户次),个,2,"));
    assert!(line("在册个案").starts_with("在册个案,个,2,"));
    assert!(line("社区活动(场)").starts_with("社区活动(场),个,1,"));
    assert!(line("链接资源(元)").starts_with("链接资源(元),元,850,"));

    let device_own = hub
        .get_as(&format!("/reports/{ZEDANG}/2025-Q1.csv"), &tokens.a)
        .await;
    assert_eq!(device_own.status, 200);

    let xlsx = hub
        .get_as(&format!("/reports/{ZEDANG}/2025-Q1.xlsx"), &tokens.bureau)
        .await;
    assert_eq!(xlsx.status, 200, "{}", String::from_utf8_lossy(&xlsx.body));
    assert!(xlsx.body.starts_with(b"PK\x03\x04"), "a zip archive");
    assert!(xlsx.body.len() > 1000);
    assert!(
        xlsx.header("content-disposition")
            .unwrap()
            .contains(&format!("{ZEDANG}-2025-Q1.xlsx"))
    );
    // The ledger's workbook carries the trends as a second sheet.
    let part = b"xl/worksheets/sheet2.xml";
    assert!(xlsx.body.windows(part.len()).any(|w| w == part));
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trends_are_the_indicators_and_overdue_counts_month_by_month() {
    let (hub, _s, tokens) = filled().await;
    let reply = hub
        .get_as(
            &format!("/api/trends?through=2025-03&station={ZEDANG}&station={CHANGZHU}"),
            &tokens.bureau,
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let trends = reply.json();
    let months: Vec<&str> = trends["months"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    assert_eq!(months.len(), 12);
    assert_eq!((months[0], months[11]), ("2024-04", "2025-03"));
    let mut busy_months = 0;
    for (i, month) in months.iter().enumerate() {
        let table = hub
            .get_as(
                &format!("/api/indicators?period={month}&station={ZEDANG}&station={CHANGZHU}"),
                &tokens.bureau,
            )
            .await
            .json();
        let last_day = table["last_day"].as_str().unwrap().to_string();
        let overdue = hub
            .get_as(
                &format!("/api/overdue?as_of={last_day}&station={ZEDANG}&station={CHANGZHU}"),
                &tokens.bureau,
            )
            .await
            .json();
        let mut district = [0i64; station_hub::projections::period::Metric::ALL.len()];
        for (s, row) in table["rows"].as_array().unwrap().iter().enumerate() {
            let station = &trends["stations"][s];
            assert_eq!(station["station_code"], row["station_code"]);
            for (m, value) in row["values"].as_array().unwrap().iter().enumerate() {
                let raw = value["raw"].as_i64().unwrap();
                assert_eq!(
                    station["metrics"][m]["raw"][i], raw,
                    "{month} {}",
                    value["metric"]
                );
                assert_eq!(station["metrics"][m]["target"], value["target"]);
                district[m] += raw;
                if value["metric"] == "cases_open" {
                    assert_eq!(station["open_cases"][i], raw);
                }
                if raw != 0 && m == 0 {
                    busy_months += 1;
                }
            }
            assert_eq!(
                station["overdue"][i], overdue["stations"][s]["overdue"],
                "{month}"
            );
        }
        for (m, sum) in district.iter().enumerate() {
            assert_eq!(trends["district"]["metrics"][m]["raw"][i], *sum);
        }
        assert_eq!(trends["district"]["overdue"][i], overdue["total"]);
    }
    assert!(busy_months > 0, "the fixture's visits show in some month");
    // The dashboard draws them, for the district and for one station.
    let page = hub.get_as("/", &tokens.bureau).await;
    assert_eq!(page.status, 200);
    let html = page.text();
    assert!(html.contains("近12个月趋势"), "{html}");
    assert!(html.contains("data-trend=\"home_visits\""));
    let page = hub
        .get_as(&format!("/?trend={ZEDANG}"), &tokens.bureau)
        .await;
    assert!(page.text().contains("近12个月趋势 · 泽当街道"));
    let bad = hub.get_as("/?trend=540502999", &tokens.bureau).await;
    assert_eq!(bad.status, 400);
    let bad = hub
        .get_as("/api/trends?through=2025-Q1", &tokens.bureau)
        .await;
    assert_eq!(bad.status, 400);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overdue_lists_are_counted_paged_and_reported_whole() {
    let (hub, s, tokens) = filled().await;
    let error = |reply: &Reply| reply.json()["error"].as_str().unwrap().to_string();

    // On 2025-05-10 both open Zedang cases are overdue: 扎西 (high risk,
    // 49 days) and 次仁卓玛 (key, 8 days).
    let page = hub
        .get_as("/api/overdue?as_of=2025-05-10&limit=1", &tokens.bureau)
        .await;
    assert_eq!(page.status, 200, "{}", page.text());
    let json = page.json();
    assert_eq!(json["total"], 2);
    let cases = json["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 1, "the limit");
    assert_eq!(
        cases[0]["case_id"],
        s.case2.to_string(),
        "most overdue first"
    );
    let zedang = json["stations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["station_code"] == ZEDANG)
        .unwrap()
        .clone();
    assert_eq!(
        (
            &zedang["overdue"],
            &zedang["high_risk"],
            &zedang["key"],
            &zedang["general"]
        ),
        (&2.into(), &1.into(), &1.into(), &0.into())
    );
    let whole = hub
        .get_as("/api/overdue?as_of=2025-05-10", &tokens.bureau)
        .await
        .json();
    assert_eq!(whole["cases"].as_array().unwrap().len(), 2);

    let grpc = hub
        .query()
        .get_overdue(authorized(
            GetOverdueRequest {
                as_of: "2025-05-10".into(),
                stations: vec![ZEDANG.into()],
                limit: 1,
            },
            &tokens.bureau,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(grpc.total, 2);
    assert_eq!(grpc.cases.len(), 1);
    assert_eq!(grpc.cases[0].case_id, s.case2.as_bytes().to_vec());
    assert_eq!(grpc.stations.len(), 1);
    assert_eq!(
        (
            grpc.stations[0].overdue,
            grpc.stations[0].high_risk,
            grpc.stations[0].key
        ),
        (2, 1, 1)
    );

    for bad in ["-1", "many", "10001"] {
        let reply = hub
            .get_as(
                &format!("/api/overdue?as_of=2025-05-10&limit={bad}"),
                &tokens.bureau,
            )
            .await;
        assert_eq!(reply.status, 400, "limit={bad}");
        assert!(error(&reply).contains("limit"), "{}", error(&reply));
    }

    // The report lists every overdue case of the station, by name.
    let csv = hub
        .get_as(
            &format!("/reports/{ZEDANG}/overdue.csv?as_of=2025-05-10"),
            &tokens.bureau,
        )
        .await;
    assert_eq!(csv.status, 200, "{}", csv.text());
    assert!(csv.body.starts_with(&[0xEF, 0xBB, 0xBF]), "UTF-8 BOM first");
    assert!(
        csv.header("content-disposition")
            .unwrap()
            .contains(&format!("{ZEDANG}-overdue-2025-05-10.csv"))
    );
    let text = csv.text();
    let lines: Vec<&str> = text.trim_start_matches('\u{feff}').lines().collect();
    assert_eq!(
        lines[0],
        "工作站,姓名,社区,级别,回访周期（天）,上次走访,应访日期,逾期天数,个案编号,档案编号"
    );
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[1].starts_with("泽当街道,扎西 བཀྲ་ཤིས,"), "{}", lines[1]);
    assert!(
        lines[1].ends_with(&format!(",高风险,7,从未走访,2025-03-22,49,{},", s.case2)),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].ends_with(&format!(",重点,30,2025-04-02,2025-05-02,8,{},", s.case1)),
        "{}",
        lines[2]
    );
    for serial in 1..=4 {
        let id = id_number("19500101", serial, true);
        assert!(!text.contains(&id), "ID number {id} in the report");
    }
    let xlsx = hub
        .get_as(
            &format!("/reports/{ZEDANG}/overdue.xlsx?as_of=2025-05-10"),
            &tokens.a,
        )
        .await;
    assert_eq!(xlsx.status, 200, "{}", String::from_utf8_lossy(&xlsx.body));
    assert!(xlsx.body.starts_with(b"PK\x03\x04"), "a zip archive");

    let other = hub
        .get_as(&format!("/reports/{ZEDANG}/overdue.csv"), &tokens.c)
        .await;
    assert_eq!(other.status, 403);
    let bad_date = hub
        .get_as(
            &format!("/reports/{ZEDANG}/overdue.csv?as_of=2025-5-10"),
            &tokens.bureau,
        )
        .await;
    assert_eq!(bad_date.status, 400);
    assert!(error(&bad_date).contains("as_of"), "{}", error(&bad_date));
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_periods_and_dates_read_alike_over_grpc_and_http() {
    let (hub, _, tokens) = filled().await;
    let overdue = |limit: u32, as_of: &str| {
        authorized(
            GetOverdueRequest {
                as_of: as_of.into(),
                stations: vec![ZEDANG.into()],
                limit,
            },
            &tokens.bureau,
        )
    };

    // 0 is the default: the whole list, on both surfaces.
    let grpc = hub
        .query()
        .get_overdue(overdue(0, "2025-05-10"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(grpc.cases.len(), 2);
    let http = hub
        .get_as(
            &format!("/api/overdue?as_of=2025-05-10&station={ZEDANG}&limit=0"),
            &tokens.bureau,
        )
        .await;
    assert_eq!(http.status, 200, "{}", http.text());
    assert_eq!(http.json()["cases"].as_array().unwrap().len(), 2);

    // Above the maximum: refused on both, with the same words.
    let grpc = hub
        .query()
        .get_overdue(overdue(10_001, "2025-05-10"))
        .await
        .unwrap_err();
    assert_eq!(grpc.code(), tonic::Code::InvalidArgument);
    assert!(
        grpc.message().contains("at most 10000"),
        "{}",
        grpc.message()
    );
    let http = hub
        .get_as("/api/overdue?as_of=2025-05-10&limit=10001", &tokens.bureau)
        .await;
    assert_eq!(http.status, 400);
    assert_eq!(http.json()["error"], "limit: at most 10000, got 10001");

    // The quarantine's page: 0 is the default, too many is refused.
    let grpc = hub
        .query()
        .get_quarantine(authorized(
            GetQuarantineRequest {
                stations: vec![],
                max_events: 0,
            },
            &tokens.bureau,
        ))
        .await;
    assert!(grpc.is_ok(), "{grpc:?}");
    let grpc = hub
        .query()
        .get_quarantine(authorized(
            GetQuarantineRequest {
                stations: vec![],
                max_events: 10_001,
            },
            &tokens.bureau,
        ))
        .await
        .unwrap_err();
    assert_eq!(grpc.code(), tonic::Code::InvalidArgument);
    assert!(
        grpc.message().contains("at most 10000"),
        "{}",
        grpc.message()
    );
    assert_eq!(
        hub.get_as("/api/quarantine?max=0", &tokens.bureau)
            .await
            .status,
        200
    );
    let http = hub
        .get_as("/api/quarantine?max=10001", &tokens.bureau)
        .await;
    assert_eq!(http.status, 400);
    assert!(
        http.json()["error"]
            .as_str()
            .unwrap()
            .contains("at most 10000")
    );

    // A bad date: refused on both, naming the parameter.
    let grpc = hub
        .query()
        .get_overdue(overdue(0, "2025-5-10"))
        .await
        .unwrap_err();
    assert_eq!(grpc.code(), tonic::Code::InvalidArgument);
    assert!(grpc.message().starts_with("as_of: "), "{}", grpc.message());
    let http = hub
        .get_as("/api/overdue?as_of=2025-5-10", &tokens.bureau)
        .await;
    assert_eq!(http.status, 400);
    assert_eq!(http.json()["error"].as_str(), Some(grpc.message()));

    // A bad or missing period: refused on both, with the same words.
    for period in ["2025-13", ""] {
        let grpc = hub
            .query()
            .get_indicators(authorized(
                GetIndicatorsRequest {
                    period: period.into(),
                    stations: vec![],
                },
                &tokens.bureau,
            ))
            .await
            .unwrap_err();
        assert_eq!(grpc.code(), tonic::Code::InvalidArgument, "{period:?}");
        assert!(grpc.message().starts_with("period: "), "{}", grpc.message());
        let http = hub
            .get_as(&format!("/api/indicators?period={period}"), &tokens.bureau)
            .await;
        assert_eq!(http.status, 400, "{period:?}");
        assert_eq!(http.json()["error"].as_str(), Some(grpc.message()));
    }
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_district_reports_list_every_station_and_their_totals() {
    let (hub, _s, tokens) = filled().await;
    let csv = hub
        .get_as("/reports/district/2025-03.csv", &tokens.bureau)
        .await;
    assert_eq!(csv.status, 200, "{}", csv.text());
    assert!(
        csv.header("content-disposition")
            .unwrap()
            .contains("540502-2025-03.csv")
    );
    let text = csv.text();
    let lines: Vec<&str> = text.trim_start_matches('\u{feff}').lines().collect();
    assert_eq!(lines[0], "工作站,指标,单位,完成数,目标数,完成率,数据完整至");
    let cell = |station: &str, label: &str, column: usize| -> String {
        let line = lines
            .iter()
            .find(|l| l.starts_with(&format!("{station},{label},")))
            .unwrap_or_else(|| panic!("{station} {label} missing from {text}"));
        line.split(',').nth(column).unwrap().to_string()
    };
    // Every station has its rows, and the district's totals sum them.
    for station in ["泽当街道", "昌珠镇", "亚堆乡", "颇章乡"] {
        assert!(!cell(station, "服务人次", 3).is_empty());
    }
    assert_eq!(cell("泽当街道", "服务人次", 3), "38");
    assert_eq!(cell("昌珠镇", "服务人次", 3), "12");
    assert_eq!(cell("乃东区合计", "服务人次", 3), "50");
    let targets: i64 = [
        "泽当街道",
        "昌珠镇",
        "亚堆乡",
        "索珠乡",
        "多颇章乡",
        "结巴乡",
        "颇章乡",
    ]
    .iter()
    .map(|s| cell(s, "服务人次", 4).parse::<i64>().unwrap())
    .sum();
    assert_eq!(cell("乃东区合计", "服务人次", 4), targets.to_string());
    assert_eq!(
        cell("乃东区合计", "服务人次", 6),
        "无数据",
        "stations without data keep the district incomplete"
    );

    let overdue = hub
        .get_as(
            "/reports/district/overdue.csv?as_of=2025-05-10",
            &tokens.bureau,
        )
        .await;
    assert_eq!(overdue.status, 200, "{}", overdue.text());
    assert_eq!(overdue.text().lines().count(), 3, "{}", overdue.text());
    let xlsx = hub
        .get_as("/reports/district/2025-Q1.xlsx", &tokens.bureau)
        .await;
    assert_eq!(xlsx.status, 200);
    assert!(xlsx.body.starts_with(b"PK\x03\x04"), "a zip archive");

    // A device's token reads its own station's reports, not the district's.
    let device = hub.get_as("/reports/district/2025-03.csv", &tokens.a).await;
    assert_eq!(device.status, 403, "{}", device.text());
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_needs_a_bureau_login_and_shows_no_id_number() {
    let (hub, _s, tokens) = filled().await;

    let anonymous = hub.get("/", &[]).await;
    assert_eq!(anonymous.status, 303);
    assert_eq!(anonymous.header("location"), Some("/login"));
    let login_page = hub.get("/login", &[]).await;
    assert_eq!(login_page.status, 200);
    assert!(
        login_page
            .text()
            .contains("<form method=\"post\" action=\"/login\">")
    );

    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let device = request(
        hub.http,
        "POST",
        "/login",
        &form,
        format!("token={}", tokens.a).as_bytes(),
    )
    .await;
    assert_eq!(device.status, 401);
    assert!(device.header("set-cookie").is_none());
    let empty = request(hub.http, "POST", "/login", &form, b"nothing=1").await;
    assert_eq!(empty.status, 401);
    assert!(empty.text().contains("<form"), "the form again");

    let login = request(
        hub.http,
        "POST",
        "/login",
        &form,
        format!("token={}", tokens.bureau).as_bytes(),
    )
    .await;
    assert_eq!(login.status, 303, "{}", login.text());
    assert_eq!(login.header("location"), Some("/"));
    let elsewhere = request(
        hub.http,
        "POST",
        "/login",
        &form,
        format!("token={}&next=//example.com/", tokens.bureau).as_bytes(),
    )
    .await;
    assert_eq!(
        elsewhere.header("location"),
        Some("/"),
        "never off the dashboard"
    );
    let back = request(
        hub.http,
        "POST",
        "/login",
        &form,
        format!("token={}&next=%2F%3Fperiod%3D2025-03", tokens.bureau).as_bytes(),
    )
    .await;
    assert_eq!(back.header("location"), Some("/?period=2025-03"));
    let cookie = login.header("set-cookie").unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let session = cookie.split(';').next().unwrap().to_string();

    let page = hub
        .get("/?period=2025-03&as_of=2025-04-20", &[("Cookie", &session)])
        .await;
    assert_eq!(page.status, 200);
    let html = page.text();
    assert!(html.contains("泽当街道"), "Chinese station names");
    assert!(html.contains("རྩེད་ཐང"), "Tibetan station names");
    assert!(html.contains("<svg"), "inline charts");
    assert!(html.contains("扎西"), "the overdue case by name");
    assert!(html.contains("设备同步"), "the devices' sync table");
    assert_eq!(html.matches("data-origin=").count(), 3, "a row per device");
    for name in ["泽当-1", "泽当-2", "昌珠-1"] {
        assert!(html.contains(&format!("<td>{name}</td>")), "device {name}");
    }
    assert!(
        html.contains(&format!(
            "href=\"/reports/{ZEDANG}/overdue.csv?as_of=2025-04-20\""
        )),
        "each station's whole overdue list"
    );
    assert!(
        html.contains("href=\"/reports/district/2025-03.xlsx\""),
        "the district's ledger"
    );
    assert!(!html.contains("<script") && !html.contains("src=\"http"));
    for serial in 1..=4 {
        let id = id_number("19500101", serial, true);
        assert!(!html.contains(&id), "ID number {id} on the dashboard");
    }
    assert!(!html.contains(&tokens.bureau), "the token is not echoed");

    let device_cookie = format!("station_hub_session={}", tokens.a);
    let as_device = hub.get("/", &[("Cookie", &device_cookie)]).await;
    assert_eq!(as_device.status, 303);

    // A form posted from another site neither logs in nor out.
    let forged = request(
        hub.http,
        "POST",
        "/login",
        &[form[0], ("Origin", "http://attacker.example")],
        format!("token={}", tokens.bureau).as_bytes(),
    )
    .await;
    assert_eq!(forged.status, 403);
    assert!(forged.header("set-cookie").is_none());
    let forged = request(
        hub.http,
        "POST",
        "/logout",
        &[("Cookie", &session), ("Origin", "http://attacker.example")],
        b"",
    )
    .await;
    assert_eq!(forged.status, 403);
    assert!(forged.header("set-cookie").is_none());
    // Behind a reverse proxy that rewrites Host, the public host arrives
    // in X-Forwarded-Host.
    let proxied = request(
        hub.http,
        "POST",
        "/login",
        &[
            form[0],
            ("Origin", "https://mzj.shannan.example"),
            ("X-Forwarded-Host", "mzj.shannan.example"),
        ],
        format!("token={}", tokens.bureau).as_bytes(),
    )
    .await;
    assert_eq!(proxied.status, 303, "{}", proxied.text());
    let own_origin = format!("http://{}", hub.http);
    let logout = request(
        hub.http,
        "POST",
        "/logout",
        &[("Cookie", &session), ("Origin", &own_origin)],
        b"",
    )
    .await;
    assert_eq!(logout.status, 303);
    assert!(logout.header("set-cookie").unwrap().contains("Max-Age=0"));
    hub.stop().await;
}

/// The Chromium binary on `PATH`, if any.
fn chromium() -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| {
            ["chromium", "chromium-browser", "google-chrome"].map(|name| dir.join(name))
        })
        .find(|candidate| candidate.is_file())
}

/// A front for the browser on another port of the same host: `/start` is
/// a page that submits the login form as a user would, to its own origin;
/// `/measure/{width}` logs in the same way from a script, lays the
/// dashboard out in a frame `width` pixels wide and writes
/// `scroll {scrollWidth} inner {innerWidth}` of the frame's page; every
/// other request goes to the hub unchanged. So the form, the cookie and the
/// dashboard share one origin, as behind the bureau's own proxy.
async fn login_front(hub: SocketAddr, token: String) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let page = format!(
        "<!DOCTYPE html><html><body><form id=\"f\" method=\"post\" \
         action=\"/login\"><input name=\"token\" value=\"{token}\">\
         <input name=\"next\" value=\"/?period=2025-03\"></form>\
         <script>document.getElementById('f').submit()</script></body></html>"
    );
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let page = page.clone();
            let token = token.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut chunk = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&chunk[..n]),
                    }
                }
                if let Some(width) = head
                    .strip_prefix(b"GET /measure/")
                    .and_then(|rest| rest.split(|b| *b == b' ').next())
                    .and_then(|w| std::str::from_utf8(w).ok())
                    .and_then(|w| w.parse::<u32>().ok())
                {
                    let page = measure_page(&token, width);
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n{page}",
                        page.len()
                    );
                    let _ = stream.write_all(reply.as_bytes()).await;
                    return;
                }
                if head.starts_with(b"GET /start ") {
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n{page}",
                        page.len()
                    );
                    let _ = stream.write_all(reply.as_bytes()).await;
                    return;
                }
                let Ok(mut upstream) = tokio::net::TcpStream::connect(hub).await else {
                    return;
                };
                if upstream.write_all(&head).await.is_ok() {
                    let _ = tokio::io::copy_bidirectional(&mut stream, &mut upstream).await;
                }
            });
        }
    });
    addr
}

/// A page that logs in with `token`, lays the dashboard out in a frame
/// `width` pixels wide, and writes how wide the frame's page is.
fn measure_page(token: &str, width: u32) -> String {
    format!(
        "<!DOCTYPE html><html><body style=\"margin:0\"><p id=\"out\">measuring</p><script>\
         (async () => {{\
           const form = new URLSearchParams({{token: '{token}', next: '/?period=2025-03'}});\
           const html = await (await fetch('/login', {{method: 'POST', body: form}})).text();\
           const frame = document.createElement('iframe');\
           frame.style.cssText = 'width:{width}px;height:2400px;border:0';\
           frame.onload = () => {{\
             const page = frame.contentDocument.documentElement;\
             document.getElementById('out').textContent =\
               'scroll ' + page.scrollWidth + ' inner ' + frame.contentWindow.innerWidth;\
           }};\
           frame.srcdoc = html;\
           document.body.appendChild(frame);\
         }})();</script></body></html>"
    )
}

/// Runs headless Chromium on `url` with `args`, returning its stdout.
async fn run_chromium(binary: std::path::PathBuf, url: String, args: Vec<String>) -> String {
    tokio::task::spawn_blocking(move || {
        let profile = tempfile::tempdir().unwrap();
        let output = std::process::Command::new(binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--virtual-time-budget=10000",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(args)
            .arg(url)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "chromium failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    })
    .await
    .unwrap()
}

/// The figure the dashboard shows for `metric` of `station`.
fn figure(dom: &str, station: &str, metric: &str) -> String {
    let block = &dom[dom.find(&format!("data-station=\"{station}\"")).unwrap()..];
    let bar = &block[block.find(&format!("data-metric=\"{metric}\"")).unwrap()..];
    let text = &bar[bar.find("class=\"figure\">").unwrap() + "class=\"figure\">".len()..];
    text[..text.find('<').unwrap()].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_renders_the_numbers_of_the_query_api() {
    let Some(binary) = chromium() else {
        eprintln!("skipped: no chromium on PATH (Debian package `chromium`)");
        return;
    };
    let (hub, _s, tokens) = filled().await;
    let grpc = hub
        .query()
        .get_indicators(authorized(
            GetIndicatorsRequest {
                period: "2025-03".into(),
                stations: vec![],
            },
            &tokens.bureau,
        ))
        .await
        .unwrap()
        .into_inner();
    let front = login_front(hub.http, tokens.bureau.clone()).await;
    let dom = run_chromium(
        binary.clone(),
        format!("http://{front}/start"),
        vec!["--dump-dom".into(), "--window-size=1280,2400".into()],
    )
    .await;
    assert!(dom.contains("社会工作站数据看板"), "{dom}");
    assert!(dom.contains("རྩེད་ཐང"));
    for row in &grpc.rows {
        for value in &row.values {
            let shown = figure(&dom, &row.station_code, &value.metric);
            // Shown to one decimal.
            let value_shown = format!("{}", (value.value * 10.0).round() / 10.0);
            let expected = match value.target {
                Some(target) => format!("{value_shown}/{target}"),
                None => value_shown,
            };
            assert_eq!(shown, expected, "{} {}", row.station_code, value.metric);
        }
    }
    // On a phone (390 px) and a desk (1400 px) the page never scrolls
    // sideways: wide tables scroll inside their own box. Both screenshots
    // are kept in the test's target folder.
    for width in [390u32, 1400] {
        let dom = run_chromium(
            binary.clone(),
            format!("http://{front}/measure/{width}"),
            vec!["--dump-dom".into(), "--window-size=1500,2600".into()],
        )
        .await;
        let text = &dom[dom.find("scroll ").unwrap_or_else(|| panic!("{dom}"))..];
        let figures: Vec<u32> = text
            .split(|c: char| !c.is_ascii_digit())
            .filter(|s| !s.is_empty())
            .take(2)
            .map(|s| s.parse().unwrap())
            .collect();
        let (scroll, inner) = (figures[0], figures[1]);
        assert_eq!(inner, width, "{text}");
        assert!(
            scroll <= inner,
            "at {width} px the page is {scroll} px wide: it scrolls sideways"
        );
        let screenshot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("dashboard-{width}.png"));
        let _ = std::fs::remove_file(&screenshot);
        run_chromium(
            binary.clone(),
            format!("http://{front}/start"),
            vec![
                format!("--screenshot={}", screenshot.display()),
                format!("--window-size={width},2400"),
            ],
        )
        .await;
        assert!(std::fs::metadata(&screenshot).unwrap().len() > 0);
    }
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bureau_lists_duplicate_files_over_json_query_and_the_dashboard_without_the_person() {
    let hub = Hub::start().await;
    let enroll = |station: &str, name: &str| {
        station_hub::auth::enroll_device(&hub.store, station, name)
            .unwrap()
            .bearer
    };
    let bureau = station_hub::auth::enroll_bureau(&hub.store, "山南市民政局")
        .unwrap()
        .bearer;
    let (token_a, token_b) = (enroll(ZEDANG, "泽当-1"), enroll(ZEDANG, "泽当-2"));
    // Two offline phones of one station open a file each for one person.
    let mut a = Device::new(ZEDANG, "zd-worker-1");
    let mut b = Device::new(ZEDANG, "zd-worker-2");
    let first = a.record(opened(
        "次仁",
        41,
        C1,
        Tier::Key,
        &[Category::Elderly],
        "2025-03-02",
    ));
    let second = b.record(opened(
        "次仁",
        41,
        C1,
        Tier::Key,
        &[Category::Elderly],
        "2025-03-04",
    ));
    let other = b.record(opened(
        "扎西",
        42,
        C1,
        Tier::Key,
        &[Category::Elderly],
        "2025-03-04",
    ));
    hub.push(&token_b, &[second.clone(), other]).await;
    hub.push(&token_a, std::slice::from_ref(&first)).await;
    hub.projected().await;

    let reply = hub.get_as("/api/duplicates", &bureau).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let json = reply.json();
    let files = json["files"].as_array().unwrap();
    assert_eq!(files.len(), 1, "{json}");
    assert_eq!(files[0]["station_code"], ZEDANG);
    assert_eq!(files[0]["case_id"], id_of(&second).to_string());
    assert_eq!(files[0]["duplicate_of"], id_of(&first).to_string());
    assert_eq!(files[0]["opened_on"], "2025-03-04");
    assert_eq!(files[0]["duplicate_of_opened_on"], "2025-03-02");
    let person = id_number("19500101", 41, true);
    assert!(!reply.text().contains(&person) && !reply.text().contains("次仁"));
    // The list says which files are one person's: its read is audited
    // under both files.
    let audit = hub
        .get_as(&format!("/api/audit?case={}", id_of(&first)), &bureau)
        .await
        .json();
    let records = audit["records"].as_array().unwrap();
    assert_eq!(records.len(), 1, "{audit}");
    assert_eq!(records[0]["read"], "duplicates");
    assert_eq!(records[0]["via"], "json");
    let both = [id_of(&second).to_string(), id_of(&first).to_string()];
    assert_eq!(records[0]["cases"], serde_json::json!(both), "{audit}");

    let grpc = hub
        .query()
        .get_duplicates(authorized(
            GetDuplicatesRequest { stations: vec![] },
            &bureau,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(grpc.files.len(), 1);
    assert_eq!(grpc.files[0].case_id, id_of(&second).as_bytes().to_vec());
    assert_eq!(
        grpc.files[0].duplicate_of,
        id_of(&first).as_bytes().to_vec()
    );

    // A device reads its own station's list, not another's.
    let own = hub
        .get_as(&format!("/api/duplicates?station={ZEDANG}"), &token_a)
        .await;
    assert_eq!(own.status, 200, "{}", own.text());
    let elsewhere = hub
        .get_as(&format!("/api/duplicates?station={CHANGZHU}"), &token_a)
        .await;
    assert_eq!(elsewhere.status, 403, "{}", elsewhere.text());

    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let login = request(
        hub.http,
        "POST",
        "/login",
        &form,
        format!("token={bureau}").as_bytes(),
    )
    .await;
    let session = login
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let page = hub.get("/?period=2025-03", &[("Cookie", &session)]).await;
    assert_eq!(page.status, 200);
    let html = page.text();
    assert!(html.contains("重复建档"), "the list on the dashboard");
    assert!(html.contains(&id_of(&second).to_string()));
    assert!(!html.contains(&person), "never the ID number");
    assert!(html.contains("待处理"), "the pair is still to be resolved");

    // The station merges the second file into the first: the pair shows
    // as resolved, and the person's files count as one.
    let caseload = |json: serde_json::Value| json["stations"][0]["open_cases"].clone();
    let reply = hub.get_as("/api/caseload", &bureau).await;
    assert_eq!(caseload(reply.json()), 2, "{}", reply.text());
    hub.push(
        &token_a,
        &[a.record(merged(id_of(&first), id_of(&second), "2025-03-05"))],
    )
    .await;
    hub.projected().await;
    let json = hub.get_as("/api/duplicates", &bureau).await.json();
    assert_eq!(json["files"][0]["resolution"], "merged", "{json}");
    let reply = hub.get_as("/api/caseload", &bureau).await;
    assert_eq!(caseload(reply.json()), 2, "{}", reply.text());
    let sync = hub.get_as("/api/sync-health", &bureau).await.json();
    let zedang = sync["stations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["station_code"] == ZEDANG)
        .unwrap();
    assert_eq!(zedang["duplicate_files"], 0, "{sync}");
    let grpc = hub
        .query()
        .get_duplicates(authorized(
            GetDuplicatesRequest { stations: vec![] },
            &bureau,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        grpc.files[0].resolution,
        station_proto::v1::DuplicateResolution::Merged as i32
    );
    let page = hub.get("/?period=2025-03", &[("Cookie", &session)]).await;
    assert!(page.text().contains("已合并"));
    // The survivor's timeline shows the absorbed file's entries, and its
    // read is in the audit of both files.
    let timeline = hub
        .get_as(&format!("/api/cases/{}/timeline", id_of(&first)), &bureau)
        .await;
    assert_eq!(timeline.status, 200, "{}", timeline.text());
    assert_eq!(
        timeline.json()["entries"].as_array().unwrap().len(),
        3,
        "{}",
        timeline.text()
    );
    assert!(!timeline.text().contains(&person), "masked");
    let audit = hub
        .get_as(&format!("/api/audit?case={}", id_of(&second)), &bureau)
        .await
        .json();
    let reads = |audit: &serde_json::Value, read: &str, via: &str| {
        audit["records"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["read"] == read && r["via"] == via)
            .count()
    };
    assert_eq!(reads(&audit, "case_timeline", "json"), 1, "{audit}");
    // Every read of the list, by the bureau and by the station's device,
    // over JSON and gRPC, and the dashboard's pages.
    assert_eq!(reads(&audit, "duplicates", "json"), 3, "{audit}");
    assert_eq!(reads(&audit, "duplicates", "grpc"), 2, "{audit}");
    assert_eq!(reads(&audit, "dashboard", "dashboard"), 2, "{audit}");
    hub.stop().await;
}
