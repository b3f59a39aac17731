//! The `station-agent` command line as a user runs it: a real process on a
//! temporary data folder.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::fixtures::{BIN, agent, status, stderr, stdout};

fn agent_stdin(data: &Path, args: &[&str], input: &str) -> Output {
    let mut child = Command::new(BIN)
        .arg("--data")
        .arg(data)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn field<'a>(line: &'a str, key: &str) -> &'a str {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
        .unwrap()
}

#[test]
fn a_field_session_on_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("phone");

    let out = agent(&data, &["status"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not initialised"), "{}", stderr(&out));

    let out = agent(
        &data,
        &["init", "--station", "540502001", "--worker", "w01"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let again = agent(
        &data,
        &["init", "--station", "540502101", "--worker", "w02"],
    );
    assert!(!again.status.success());
    assert!(stderr(&again).contains("already initialised"));

    let name = "次仁卓玛 ཚེ་རིང་སྒྲོལ་མ";
    let out = agent(
        &data,
        &[
            "case",
            "open",
            "--name",
            name,
            "--id-number",
            "11010519491231002x",
            "--community",
            "540502001001",
            "--category",
            "低保",
            "--category",
            "elderly",
            "--tier",
            "1",
            "--date",
            "2026-11-01",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let line = stdout(&out);
    let case = field(&line, "case_id").to_string();
    assert_eq!(field(&line, "origin_seq"), "1");

    let out = agent(
        &data,
        &[
            "visit",
            "--case",
            &case,
            "--date",
            "2026-11-05",
            "--kind",
            "home",
            "--minutes",
            "45",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(field(&stdout(&out), "origin_seq"), "2");

    // Bad input: a one-line reason naming the field, a non-zero exit, nothing recorded.
    let refusals: &[(&[&str], &str)] = &[
        (
            &[
                "case",
                "open",
                "--name",
                "某人",
                "--id-number",
                "110105194912310021",
                "--community",
                "540502001001",
                "--category",
                "dibao",
                "--tier",
                "2",
            ],
            "case_opened.id_number",
        ),
        (
            &["visit", "--case", &case, "--date", "2099-01-01"],
            "visit_recorded.visit_date",
        ),
        (
            &[
                "visit",
                "--case",
                "01a22a33-a6a8-7406-b625-0732730bae61",
                "--date",
                "2026-11-05",
            ],
            "unknown case",
        ),
        (
            &[
                "resource",
                "--case",
                &case,
                "--kind",
                "cash",
                "--source",
                "民政局",
                "--cash",
                "-20",
            ],
            "resource_linked.cash_fen",
        ),
        (
            &[
                "activity",
                "--kind",
                "clinic",
                "--community",
                "540502101001",
                "--participants",
                "5",
                "--person-times",
                "5",
            ],
            "activity_held.community_code",
        ),
    ];
    for (args, expected) in refusals {
        let out = agent(&data, args);
        assert!(!out.status.success(), "{args:?} should be refused");
        let err = stderr(&out);
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(err.contains(expected), "{args:?}: {err}");
        assert!(!err.contains(name), "no personal data in errors");
    }
    assert_eq!(status(&data)["head_seq"], 2);

    // Bulk entry: each line on its own; one bad line refused, the others kept.
    let lines = format!(
        "{{\"visitRecorded\":{{\"caseId\":\"{case}\",\"visitDate\":\"2026-11-12\",\"kind\":\"VISIT_KIND_PHONE\",\"durationMinutes\":10}}}}\n\
         # a comment\n\
         {{\"activityHeld\":{{\"heldOn\":\"2026-11-20\",\"communityCode\":\"540502001002\",\"kind\":\"ACTIVITY_KIND_CHILD_CARE\",\"title\":\"儿童之家\",\"participants\":12,\"personTimes\":12}}}}\n\
         {{\"visitRecorded\":{{\"caseId\":\"{case}\",\"visitDate\":\"2026-13-01\",\"kind\":\"VISIT_KIND_HOME\"}}}}\n"
    );
    let out = agent_stdin(&data, &["record", "--json", "-"], &lines);
    assert!(!out.status.success());
    let report = stdout(&out);
    assert!(report.contains("line 1: ok"), "{report}");
    assert!(report.contains("line 3: ok"), "{report}");
    assert!(
        report.contains("line 4: error: invalid entry: visit_recorded.visit_date"),
        "{report}"
    );
    assert!(report.contains("2 recorded, 1 refused"), "{report}");
    assert_eq!(status(&data)["head_seq"], 4);
    assert_eq!(status(&data)["pending"], 4);

    let out = agent(&data, &["log", "--format", "jsonl", "--since", "1"]);
    let events: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 3);
    assert_eq!(events[0]["origin_seq"], 2);
    assert_eq!(events[1]["body"]["visitRecorded"]["caseId"], case.as_str());

    let out = agent(&data, &["cases", "--format", "json"]);
    let cases: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(cases[0]["name"], name);
    assert_eq!(cases[0]["last_visit"], "2026-11-12");

    let out = agent(&data, &["cases", "--due", "--format", "json"]);
    let due: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(due[0]["due_on"], "2026-11-19");

    let out = agent(
        &data,
        &[
            "void",
            "--event",
            field(&line, "event_id"),
            "--reason",
            "重复建档",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = agent(&data, &["cases", "--format", "json"]);
    assert_eq!(stdout(&out).trim(), "[]");
}

#[test]
fn a_call_to_a_guardian_is_recorded_and_a_bad_one_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("phone");
    let out = agent(
        &data,
        &["init", "--station", "540502001", "--worker", "w01"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = agent(
        &data,
        &[
            "case",
            "open",
            "--name",
            "扎西",
            "--id-number",
            "540502201203150014",
            "--community",
            "540502001003",
            "--category",
            "留守儿童",
            "--tier",
            "1",
            "--date",
            "2026-11-01",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let case = field(&stdout(&out), "case_id").to_string();

    let out = agent(
        &data,
        &[
            "call",
            "--case",
            &case,
            "--date",
            "2026-11-03",
            "--outcome",
            "reached",
            "--minutes",
            "12",
            "--note",
            "监护人在拉萨务工",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(field(&stdout(&out), "origin_seq"), "2");

    let refusals: &[(&[&str], &str)] = &[
        (
            &[
                "call",
                "--case",
                &case,
                "--outcome",
                "no-answer",
                "--minutes",
                "4",
            ],
            "guardian_called.duration_minutes",
        ),
        (&["call", "--case", &case, "--outcome", "busy"], "busy"),
        (&["call", "--case", &case], "--outcome"),
    ];
    for (args, expected) in refusals {
        let out = agent(&data, args);
        assert_eq!(out.status.code(), Some(2), "{args:?} should be refused");
        let err = stderr(&out);
        assert!(err.contains(expected), "{args:?}: {err}");
    }
    assert_eq!(status(&data)["head_seq"], 2);

    // A call is not a follow-up: the high-risk case is still due a week after it opened.
    let out = agent(&data, &["cases", "--due", "--format", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let due = stdout(&out);
    assert!(due.contains(&case), "{due}");
    assert!(due.contains("2026-11-08"), "{due}");
}

/// The token `init` stored in `data`.
fn stored_token(data: &Path) -> Option<String> {
    station_agent::Agent::open(data, crate::fixtures::cli_store_options(data))
        .unwrap()
        .identity()
        .token
        .clone()
}

#[test]
fn init_reads_the_token_from_a_file_or_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let token = "0123456789ab.00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    let init = ["init", "--station", "540502001", "--worker", "w1"];

    // From a file: never on the command line, so never in `ps`.
    let file = dir.path().join("token");
    std::fs::write(&file, format!("{token}\n")).unwrap();
    let data = dir.path().join("from-file");
    let mut args = init.to_vec();
    args.extend(["--token-file", file.to_str().unwrap()]);
    let out = agent(&data, &args);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stored_token(&data).as_deref(), Some(token));

    // From the environment, which `--help` names.
    let data = dir.path().join("from-env");
    let out = Command::new(BIN)
        .arg("--data")
        .arg(&data)
        .args(init)
        .env("STATION_AGENT_TOKEN", token)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stored_token(&data).as_deref(), Some(token));
    let help = stdout(&agent(&data, &["init", "--help"]));
    assert!(help.contains("STATION_AGENT_TOKEN"), "{help}");
    assert!(help.contains("--token-file"), "{help}");
    assert!(!help.contains(token), "{help}");

    // A file without a token, or one that is not there, is refused and
    // creates nothing.
    let empty = dir.path().join("empty");
    std::fs::write(&empty, " \n").unwrap();
    for file in [&empty, &dir.path().join("absent")] {
        let data = dir.path().join("refused");
        let mut args = init.to_vec();
        args.extend(["--token-file", file.to_str().unwrap()]);
        let out = agent(&data, &args);
        assert!(!out.status.success());
        assert!(stderr(&out).contains("token file"), "{}", stderr(&out));
        assert!(!data.exists());
    }
    // Both a token and a file is a usage error.
    let mut args = init.to_vec();
    args.extend(["--token", token, "--token-file", file.to_str().unwrap()]);
    assert_eq!(
        agent(&dir.path().join("both"), &args).status.code(),
        Some(2)
    );
}

#[test]
fn plain_http_to_another_machine_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let init = |name: &str, hub: &str| {
        agent(
            &dir.path().join(name),
            &[
                "init",
                "--station",
                "540502001",
                "--worker",
                "w1",
                "--hub",
                hub,
            ],
        )
    };
    for remote in [
        "http://192.0.2.7:7400",
        "http://hub.example:7400/",
        "HTTP://[2001:db8::1]:7400",
    ] {
        let out = init("remote", remote);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("warning:"),
            "{remote}: {}",
            stderr(&out)
        );
        assert!(stderr(&out).contains("unencrypted"), "{}", stderr(&out));
        std::fs::remove_dir_all(dir.path().join("remote")).unwrap();
    }
    for local in [
        "http://127.0.0.1:7400",
        "http://localhost:7400",
        "http://[::1]:7400",
        "https://hub.example:7400",
    ] {
        let out = init("local", local);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(
            !stderr(&out).contains("warning"),
            "{local}: {}",
            stderr(&out)
        );
        std::fs::remove_dir_all(dir.path().join("local")).unwrap();
    }
}

#[test]
fn a_second_file_for_one_person_is_refused_on_the_command_line_and_in_bulk_entry() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("phone");
    let out = agent(
        &data,
        &["init", "--station", "540502001", "--worker", "w01"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let open = |name: &str, id_number: &str| {
        agent(
            &data,
            &[
                "case",
                "open",
                "--name",
                name,
                "--id-number",
                id_number,
                "--community",
                "540502001001",
                "--category",
                "elderly",
                "--tier",
                "2",
                "--date",
                "2026-11-01",
            ],
        )
    };
    let out = open("次仁卓玛", "11010519491231002X");
    assert!(out.status.success(), "{}", stderr(&out));
    let case = field(&stdout(&out), "case_id").to_string();
    // 档案编号: the station's short name, the year, the device's code, a serial.
    let number = field(&stdout(&out), "file_number").to_string();
    assert!(
        number.starts_with("泽当-2026-") && number.ends_with("-0001"),
        "{number}"
    );

    // Typed again, with another name and a lower-case x: the same person.
    let out = open("次仁", "11010519491231002x");
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(
        err.contains("case_opened.id_number: this person already has an open file at this station"),
        "{err}"
    );
    assert!(err.contains(&case), "names the existing case: {err}");
    assert!(!err.contains("1101051949"), "never the ID number: {err}");
    assert!(!err.contains("次仁"), "never the name: {err}");
    assert_eq!(status(&data)["head_seq"], 1);

    let line = "{\"caseOpened\":{\"name\":\"次仁卓玛\",\"idNumber\":\"11010519491231002X\",\
                \"gender\":\"GENDER_FEMALE\",\"birthDate\":\"1949-12-31\",\
                \"communityCode\":\"540502001001\",\"categories\":[\"CATEGORY_ELDERLY\"],\
                \"tier\":\"TIER_KEY\",\"source\":\"CASE_SOURCE_OUTREACH\",\"openedOn\":\"2026-11-02\"}}\n";
    let out = agent_stdin(&data, &["record", "--json", "-"], line);
    assert!(!out.status.success());
    let report = stdout(&out);
    assert!(
        report.contains(&format!(
            "line 1: error: case_opened.id_number: this person already has an open file at this station, case {case}"
        )),
        "{report}"
    );
    assert!(!report.contains("1101051949"), "{report}");
    assert!(report.contains("0 recorded, 1 refused"), "{report}");
    assert_eq!(status(&data)["head_seq"], 1);

    // A case is named by its id or a unique prefix of it; an ambiguous
    // prefix is refused with the candidates.
    let out = open("扎西", "540502201203150014");
    assert!(out.status.success(), "{}", stderr(&out));
    let other = field(&stdout(&out), "case_id").to_string();
    let other_number = field(&stdout(&out), "file_number").to_string();
    assert_eq!(
        other_number,
        format!("{}0002", number.trim_end_matches("0001")),
        "the device's next serial"
    );
    let out = agent(
        &data,
        &["visit", "--case", &other_number, "--date", "2026-11-05"],
    );
    assert!(
        out.status.success(),
        "a case named by its number: {}",
        stderr(&out)
    );
    let listed = stdout(&agent(&data, &["cases"]));
    assert!(
        listed.contains(&number) && listed.contains(&other_number),
        "{listed}"
    );
    let unique: String = case.replace('-', "")[..31].to_uppercase();
    let out = agent(&data, &["visit", "--case", &unique, "--date", "2026-11-05"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let shared = &case[..4];
    assert_eq!(
        shared,
        &other[..4],
        "ids made seconds apart share their first digits"
    );
    let out = agent(&data, &["visit", "--case", shared, "--date", "2026-11-05"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("visit_recorded.case_id: {shared} names 2 cases")),
        "{err}"
    );
    assert!(err.contains(&case) && err.contains(&other), "{err}");
    let out = agent(
        &data,
        &["visit", "--case", "ffff-ff", "--date", "2026-11-05"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(
            "visit_recorded.case_id: no case of this station has an id starting with ffffff"
        ),
        "{}",
        stderr(&out)
    );
    let out = agent(&data, &["visit", "--case", "abc", "--date", "2026-11-05"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("at least 4 of its first hexadecimal digits"));
    assert_eq!(status(&data)["head_seq"], 4);

    // Once the file is closed, a new one may be opened.
    let out = agent(
        &data,
        &["case", "close", "--case", &case, "--reason", "迁出"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = agent_stdin(&data, &["record", "--json", "-"], line);
    assert!(out.status.success(), "{}", stdout(&out));
}

#[test]
fn two_files_of_one_person_are_merged_and_a_flag_dismissed_on_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("phone");
    let out = agent(
        &data,
        &["init", "--station", "540502001", "--worker", "w01"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let open = |date: &str| {
        let out = agent(
            &data,
            &[
                "case",
                "open",
                "--name",
                "扎西",
                "--id-number",
                "540502201203150014",
                "--community",
                "540502001003",
                "--category",
                "留守儿童",
                "--tier",
                "2",
                "--date",
                date,
            ],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        let printed = stdout(&out);
        (
            field(&printed, "case_id").to_string(),
            field(&printed, "file_number").to_string(),
        )
    };
    let (first, _) = open("2026-11-01");
    let out = agent(
        &data,
        &[
            "case",
            "close",
            "--case",
            &first,
            "--reason",
            "迁出",
            "--date",
            "2026-11-02",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let (second, second_number) = open("2026-11-03");

    // The first file is merged into the second, named by its 档案编号.
    let out = agent(
        &data,
        &[
            "case",
            "merge",
            "--into",
            &second_number,
            "--case",
            &first,
            "--reason",
            "同一人两份档案",
            "--date",
            "2026-11-04",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = agent(&data, &["cases", "--all", "--format", "json"]);
    let cases: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let merged = cases
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["case_id"] == first.as_str())
        .unwrap();
    assert_eq!(merged["merged_into"], second.as_str());
    assert_eq!(merged["status"], "closed");
    let out = agent(&data, &["cases", "--all"]);
    assert!(stdout(&out).contains("merged"), "{}", stdout(&out));

    // Again, through record --json: refused, the file is merged already; a
    // dismissal is recorded.
    let lines = format!(
        "{{\"casesMerged\":{{\"survivorCaseId\":\"{second}\",\"absorbedCaseId\":\"{first}\",\"reason\":\"x\",\"mergedOn\":\"2026-11-05\"}}}}\n\
         {{\"duplicateDismissed\":{{\"caseId\":\"{second}\",\"duplicateOfCaseId\":\"{first}\",\"reason\":\"两个人\",\"dismissedOn\":\"2026-11-05\"}}}}\n"
    );
    let out = agent_stdin(&data, &["record", "--json", "-"], &lines);
    let printed = stdout(&out);
    assert!(
        printed.contains("line 1: error: cases_merged.absorbed_case_id"),
        "{printed}"
    );
    assert!(printed.contains("line 2: ok"), "{printed}");
    assert!(printed.contains("1 recorded, 1 refused"), "{printed}");
}

#[test]
fn reviews_are_asked_for_returned_and_listed_on_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("phone");
    let out = agent(
        &data,
        &["init", "--station", "540502001", "--worker", "w01"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = agent(
        &data,
        &[
            "case",
            "open",
            "--name",
            "央金",
            "--id-number",
            "540502201203150014",
            "--community",
            "540502001003",
            "--category",
            "孤儿",
            "--tier",
            "2",
            "--date",
            "2026-11-01",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let case = field(&stdout(&out), "case_id").to_string();

    // Nothing to review yet: refused, nothing recorded.
    let out = agent(
        &data,
        &["review", "request", "--case", &case, "--what", "closure"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("review_requested.subject_event_id: case")
            && stderr(&out).contains("has no closure to review"),
        "{}",
        stderr(&out)
    );
    let out = agent(
        &data,
        &["review", "request", "--case", &case, "--what", "merger"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(status(&data)["head_seq"], 1);

    let out = agent(
        &data,
        &[
            "case",
            "close",
            "--case",
            &case,
            "--reason",
            "收养",
            "--date",
            "2026-11-02",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = agent(
        &data,
        &[
            "review",
            "request",
            "--case",
            &case,
            "--what",
            "结案",
            "--date",
            "2026-11-02",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let request = field(&stdout(&out), "event_id").to_string();

    // A return needs a comment; with one it is listed as returned.
    let out = agent(
        &data,
        &["review", "return", "--request", &request, "--comment", " "],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("review_returned.comment"),
        "{}",
        stderr(&out)
    );
    let out = agent(
        &data,
        &[
            "review",
            "return",
            "--request",
            &request,
            "--comment",
            "请补充收养登记 ཡིག་ཆ",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = agent(&data, &["review", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = stdout(&out);
    assert!(table.contains(&request), "{table}");
    assert!(table.contains("returned: 请补充收养登记 ཡིག་ཆ"), "{table}");
    let out = agent(&data, &["review", "list", "--format", "json"]);
    let rows: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(rows[0]["state"], "returned");
    assert_eq!(rows[0]["subject"], "closure");
    assert_eq!(rows[0]["stale"], false);

    // A decision on a request this device does not hold is refused.
    let out = agent(&data, &["review", "approve", "--request", &case]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("review_approved.request_id: this device holds no review request"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn status_says_a_wiped_device_is_wiped_and_every_other_command_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("phone");
    let out = agent(&data, &["init", "--station", "540502001", "--worker", "w1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let device =
        station_agent::Agent::open(&data, crate::fixtures::cli_store_options(&data)).unwrap();
    device.log().wipe(1_700_000_000_000).unwrap();
    drop(device);

    let json = crate::fixtures::status(&data);
    assert_eq!(json["wiped"], true, "{json}");
    assert_eq!(json["wiped_at_ms"], 1_700_000_000_000_i64, "{json}");
    let table = agent(&data, &["status"]);
    assert!(table.status.success(), "{}", stderr(&table));
    assert!(stdout(&table).starts_with("wiped "), "{}", stdout(&table));
    for args in [
        &["cases"][..],
        &["log"],
        &["sync", "--hub", "http://127.0.0.1:1"],
    ] {
        let out = agent(&data, args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(stderr(&out).contains("wiped"), "{args:?}: {}", stderr(&out));
    }
}

/// Runs `station-agent --data DATA ARGS…` on a terminal (`script` gives it
/// a pseudo-terminal), typing `typed` once it asks for the passphrase;
/// answers its exit status and what the terminal showed.
fn on_terminal(data: &Path, args: &str, typed: &str) -> Option<(bool, String)> {
    use std::io::Read as _;
    let command = format!("{BIN} --data {} {args}", data.display());
    let mut child = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env_remove("STATION_AGENT_PASSPHRASE")
        .env_remove("STATION_AGENT_KEY_FILE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    let mut stdout = child.stdout.take().unwrap();
    let mut shown = Vec::new();
    let mut chunk = [0u8; 256];
    while !String::from_utf8_lossy(&shown).contains("passphrase of the store in") {
        let n = stdout.read(&mut chunk).unwrap();
        if n == 0 {
            break;
        }
        shown.extend_from_slice(&chunk[..n]);
    }
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(typed.as_bytes()).unwrap();
    stdout.read_to_end(&mut shown).unwrap();
    drop(stdin);
    let status = child.wait().unwrap();
    Some((
        status.success(),
        String::from_utf8_lossy(&shown).into_owned(),
    ))
}

#[test]
fn the_passphrase_of_a_store_is_asked_on_a_terminal_and_never_shown() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("phone");
    let passphrase = "ri-ka-tse 2026";
    let init = Command::new(BIN)
        .arg("--data")
        .arg(&data)
        .args(["init", "--station", "540502001", "--worker", "w1"])
        .env("STATION_AGENT_PASSPHRASE", passphrase)
        .output()
        .unwrap();
    assert!(init.status.success(), "{}", stderr(&init));

    // Without a terminal nothing is asked: the error says which key is needed.
    let refused = agent(&data, &["status"]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("encrypted"),
        "{}",
        stderr(&refused)
    );

    let Some((ok, shown)) = on_terminal(&data, "status", &format!("{passphrase}\n")) else {
        eprintln!("skipped: no `script` to give the command a terminal");
        return;
    };
    assert!(ok, "{shown}");
    assert!(shown.contains("passphrase of the store in"), "{shown}");
    assert!(shown.contains("origin_id"), "{shown}");
    assert!(
        !shown.contains(passphrase),
        "the passphrase is not echoed: {shown}"
    );
    let (ok, shown) = on_terminal(&data, "status", "guess\n").unwrap();
    assert!(!ok, "{shown}");
    assert!(shown.contains("wrong key"), "{shown}");
}

#[test]
fn a_transfer_is_asked_for_on_the_command_line_and_answers_this_station_may_not_give_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("phone");
    let out = agent(
        &data,
        &["init", "--station", "540502101", "--worker", "w01"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = agent(
        &data,
        &[
            "case",
            "open",
            "--name",
            "扎西",
            "--id-number",
            "540502201203150014",
            "--community",
            "540502101001",
            "--category",
            "留守儿童",
            "--tier",
            "2",
            "--date",
            "2026-11-01",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let number = field(&stdout(&out), "file_number").to_string();
    let transfer = |to: &str| {
        agent(
            &data,
            &[
                "case",
                "transfer",
                "--case",
                &number,
                "--to",
                to,
                "--reason",
                "全家迁居泽当",
                "--date",
                "2026-11-02",
            ],
        )
    };
    let own = transfer("540502101");
    assert_eq!(own.status.code(), Some(2));
    assert!(
        stderr(&own).contains("case_transfer_requested.to_station_code"),
        "{}",
        stderr(&own)
    );
    let out = transfer("540502001");
    assert!(out.status.success(), "{}", stderr(&out));
    let request = field(&stdout(&out), "event_id").to_string();

    // This station was not asked: it cannot answer its own request.
    let out = agent(
        &data,
        &[
            "case",
            "decline-transfer",
            "--request",
            &request,
            "--reason",
            "x",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("addressed to station 540502001, not to this station"),
        "{}",
        stderr(&out)
    );
    // Nor answer a request it does not hold, through record --json.
    let unknown = "01928c5a-1e40-7000-8000-000000000099";
    let lines = format!(
        "{{\"caseTransferAccepted\":{{\"requestId\":\"{unknown}\",\"communityCode\":\"540502101001\",\"acceptedOn\":\"2026-11-03\"}}}}\n"
    );
    let out = agent_stdin(&data, &["record", "--json", "-"], &lines);
    let printed = stdout(&out);
    assert!(
        printed
            .contains("case_transfer_accepted.request_id: this device holds no transfer request"),
        "{printed}"
    );
    // The file stays open here until the station asked takes it over.
    let out = agent(&data, &["cases", "--all", "--format", "json"]);
    let cases: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(cases[0]["status"], "open");

    // A phone of the station asked, once the city hub's transfers feed
    // handed it the opening and the request, lists the request to answer.
    let sent = {
        let sender =
            station_agent::Agent::open(&data, crate::fixtures::cli_store_options(&data)).unwrap();
        sender.own_events(0, 100).unwrap()
    };
    let asked = dir.path().join("asked");
    let out = agent(
        &asked,
        &["init", "--station", "540502001", "--worker", "w02"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    {
        let receiver =
            station_agent::Agent::open(&asked, crate::fixtures::cli_store_options(&asked)).unwrap();
        receiver.log().apply_transferred(sent, 7).unwrap();
    }
    let out = agent(&asked, &["case", "transfers"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = stdout(&out);
    assert!(table.contains(&request), "{table}");
    assert!(table.contains(&number), "{table}");
    assert!(
        table.contains("540502101") && table.contains("扎西"),
        "{table}"
    );
    assert!(table.contains("全家迁居泽当"), "{table}");
    assert!(table.contains("1 transfer requests to answer"), "{table}");
    let out = agent(&asked, &["case", "transfers", "--format", "json"]);
    let rows: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(rows[0]["request_id"], request.as_str());
    assert_eq!(rows[0]["requested_on"], "2026-11-02");
    let out = agent(&asked, &["status"]);
    assert!(
        stdout(&out).contains("1 transfer requests of other stations to answer"),
        "{}",
        stdout(&out)
    );
    // Only asked: no case of this station until it accepts.
    let out = agent(&asked, &["cases", "--all", "--format", "json"]);
    let cases: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(cases.as_array().map(Vec::len), Some(0), "{cases}");
    let out = agent(
        &asked,
        &[
            "case",
            "accept-transfer",
            "--request",
            &request,
            "--community",
            "540502001003",
            "--date",
            "2026-11-03",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = agent(&asked, &["case", "transfers"]);
    assert!(
        stdout(&out).contains("0 transfer requests to answer"),
        "{}",
        stdout(&out)
    );
    let out = agent(&asked, &["cases", "--format", "json"]);
    let cases: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(cases[0]["file_number"], number.as_str(), "{cases}");
    assert_eq!(cases[0]["status"], "open");
    assert_eq!(cases[0]["community_code"], "540502001003");
}

#[test]
fn entries_the_districts_review_policy_names_are_recorded_with_a_review_request() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("phone");
    let out = agent(
        &data,
        &["init", "--station", "540502001", "--worker", "w01"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = agent(
        &data,
        &[
            "case",
            "open",
            "--name",
            "央金",
            "--id-number",
            "540502201203150014",
            "--community",
            "540502001003",
            "--category",
            "孤儿",
            "--tier",
            "2",
            "--date",
            "2026-11-01",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let case = field(&stdout(&out), "case_id").to_string();

    // Before any hub said otherwise nothing needs review.
    let out = agent(
        &data,
        &[
            "case",
            "note",
            "--case",
            &case,
            "--kind",
            "plan",
            "--text",
            "每周探访",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !stdout(&out).contains("review_request_id"),
        "{}",
        stdout(&out)
    );

    // The district's policy, as a hub's Hello leaves it in the store:
    // case plans and closures need review, tier changes do not.
    {
        let device =
            station_agent::Agent::open(&data, crate::fixtures::cli_store_options(&data)).unwrap();
        let policy = station_proto::review::ReviewPolicy {
            case_plan: true,
            closure: true,
            ..station_proto::review::ReviewPolicy::default()
        };
        assert!(device.log().set_review_policy(&policy).unwrap());
        assert!(!device.log().set_review_policy(&policy).unwrap());
    }

    let out = agent(
        &data,
        &[
            "case", "assess", "--case", &case, "--tier", "1", "--reason", "独居",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !stdout(&out).contains("review_request_id"),
        "{}",
        stdout(&out)
    );
    let out = agent(
        &data,
        &[
            "case",
            "note",
            "--case",
            &case,
            "--kind",
            "plan",
            "--text",
            "每三天探访",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let plan = field(&stdout(&out), "event_id").to_string();
    let plan_review = field(&stdout(&out), "review_request_id").to_string();
    let out = agent_stdin(
        &data,
        &["record", "--json", "-"],
        &format!(
            "{{\"caseClosed\":{{\"caseId\":\"{case}\",\"reason\":\"收养\",\"closedOn\":\"2026-11-02\"}}}}\n"
        ),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let line = stdout(&out).lines().next().unwrap().to_string();
    assert!(line.starts_with("line 1: ok "), "{line}");
    let closure = field(&line, "event_id").to_string();
    let closure_review = field(&line, "review_request_id").to_string();
    assert_eq!(status(&data)["head_seq"], 7);

    // Both wait for a supervisor, each naming its entry.
    let out = agent(&data, &["review", "list", "--format", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    for (review, subject, entry) in [
        (&plan_review, "case-plan", &plan),
        (&closure_review, "closure", &closure),
    ] {
        let row = rows
            .iter()
            .find(|r| r["request_id"] == review.as_str())
            .unwrap_or_else(|| panic!("{review} not listed in {rows:?}"));
        assert_eq!(row["state"], "pending");
        assert_eq!(row["subject"], subject);
        assert_eq!(row["subject_event_id"], entry.as_str());
    }
}

#[test]
fn a_person_without_an_id_number_is_opened_on_the_command_line_and_a_namesake_warned_of() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("phone");
    let out = agent(
        &data,
        &["init", "--station", "540502001", "--worker", "w01"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let open = |name: &str, extra: &[&str]| {
        let mut args = vec![
            "case",
            "open",
            "--name",
            name,
            "--community",
            "540502001001",
            "--category",
            "child-in-difficulty",
            "--tier",
            "2",
            "--date",
            "2026-11-01",
        ];
        args.extend_from_slice(extra);
        agent(&data, &args)
    };
    // Without an ID number, the birth date and gender are required.
    let out = open("扎西·次仁", &["--gender", "male"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("case_opened.birth_date: is required when there is no ID number"),
        "{}",
        stderr(&out)
    );
    let out = open("扎西·次仁", &["--birth-date", "2019-06-01"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("case_opened.gender: is required when there is no ID number"),
        "{}",
        stderr(&out)
    );
    let out = open(
        "扎西·次仁",
        &["--birth-date", "2030-01-01", "--gender", "male"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(status(&data)["head_seq"], 0);

    let child = ["--birth-date", "2019-06-01", "--gender", "male"];
    let out = open("扎西·次仁", &child);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
    let first = field(&stdout(&out), "case_id").to_string();
    // The same name written another way, the same birth date and gender:
    // recorded, with a warning naming the station only.
    let out = open("扎西 次仁", &child);
    assert!(out.status.success(), "{}", stderr(&out));
    let warning = stderr(&out);
    assert!(
        warning.contains("warning: possible duplicate:") && warning.contains("540502001"),
        "{warning}"
    );
    assert!(
        !warning.contains("扎西") && !warning.contains("2019"),
        "{warning}"
    );
    assert_ne!(field(&stdout(&out), "case_id"), first);
    // Born another day: another person, no warning.
    let out = open(
        "扎西次仁",
        &["--birth-date", "2019-06-02", "--gender", "male"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));

    // In bulk entry too: an opening without an ID number, warned of.
    let line = "{\"caseOpened\":{\"name\":\"扎西.次仁\",\
                \"gender\":\"GENDER_MALE\",\"birthDate\":\"2019-06-01\",\
                \"communityCode\":\"540502001001\",\"categories\":[\"CATEGORY_ORPHAN\"],\
                \"tier\":\"TIER_KEY\",\"source\":\"CASE_SOURCE_OUTREACH\",\"openedOn\":\"2026-11-02\"}}\n\
                {\"caseOpened\":{\"name\":\"卓玛\",\
                \"gender\":\"GENDER_FEMALE\",\
                \"communityCode\":\"540502001001\",\"categories\":[\"CATEGORY_ORPHAN\"],\
                \"tier\":\"TIER_KEY\",\"source\":\"CASE_SOURCE_OUTREACH\",\"openedOn\":\"2026-11-02\"}}\n";
    let out = agent_stdin(&data, &["record", "--json", "-"], line);
    let report = stdout(&out);
    assert!(report.contains("line 1: ok "), "{report}");
    assert!(
        report.contains("case_opened.birth_date: is required when there is no ID number")
            && report.contains("line 2: error:"),
        "{report}"
    );
    assert!(report.contains("1 recorded, 1 refused"), "{report}");
    assert!(
        stderr(&out).contains("line 1: warning: possible duplicate:"),
        "{}",
        stderr(&out)
    );
    assert_eq!(status(&data)["head_seq"], 4);
}

#[test]
fn a_visit_that_found_nobody_is_recorded_and_a_bad_one_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("phone");
    let out = agent(
        &data,
        &["init", "--station", "540502001", "--worker", "w01"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = agent(
        &data,
        &[
            "case",
            "open",
            "--name",
            "达瓦",
            "--id-number",
            "540502194503150013",
            "--community",
            "540502001003",
            "--category",
            "空巢",
            "--tier",
            "1",
            "--date",
            "2026-11-01",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let case = field(&stdout(&out), "case_id").to_string();

    let out = agent(
        &data,
        &[
            "attempt",
            "--case",
            &case,
            "--date",
            "2026-11-03",
            "--reason",
            "外出",
            "--note",
            "邻居说去拉萨看病了",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(field(&stdout(&out), "origin_seq"), "2");

    let refusals: &[(&[&str], &str)] = &[
        (
            &[
                "attempt",
                "--case",
                &case,
                "--reason",
                "away",
                "--date",
                "2099-01-01",
            ],
            "visit_attempted.attempted_on",
        ),
        (
            &["attempt", "--case", &case, "--reason", "asleep"],
            "asleep",
        ),
        (&["attempt", "--case", &case], "--reason"),
        (
            &[
                "attempt",
                "--case",
                "0193aaaa-0000-7000-8000-000000000000",
                "--reason",
                "moved",
            ],
            "visit_attempted.case_id",
        ),
    ];
    for (args, expected) in refusals {
        let out = agent(&data, args);
        assert_eq!(out.status.code(), Some(2), "{args:?} should be refused");
        let err = stderr(&out);
        assert!(err.contains(expected), "{args:?}: {err}");
    }
    assert_eq!(status(&data)["head_seq"], 2);

    // Scripted entry takes the new kind through the proto3 JSON mapping, with
    // the same rules.
    let lines = format!(
        "{{\"visitAttempted\":{{\"caseId\":\"{case}\",\"attemptedOn\":\"2026-11-04\",\"reason\":\"ABSENCE_REASON_NOBODY_HOME\"}}}}\n\
         {{\"visitAttempted\":{{\"caseId\":\"{case}\",\"attemptedOn\":\"2026-11-05\"}}}}\n"
    );
    let out = agent_stdin(&data, &["record", "--json", "-"], &lines);
    let report = stdout(&out);
    assert!(report.contains("line 1: ok"), "{report}");
    assert!(
        report.contains("line 2: error: invalid entry: visit_attempted.reason"),
        "{report}"
    );
    assert_eq!(status(&data)["head_seq"], 3);

    // Nobody was seen: the high-risk case is still due a week after it opened.
    let out = agent(&data, &["cases", "--due", "--format", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let due = stdout(&out);
    assert!(due.contains(&case), "{due}");
    assert!(due.contains("2026-11-08"), "{due}");
}
