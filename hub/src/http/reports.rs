//! The reports of one station, as CSV (UTF-8 with a BOM, so Excel reads the
//! Chinese) or XLSX:
//!
//! - the ledger (台账) of a month, quarter or year: one row per indicator
//!   with its count, target, completion and how far the station's data is
//!   complete;
//!   as XLSX, with a second sheet of the twelve months up to the period's
//!   end (近12个月趋势): each indicator month by month against its monthly
//!   target, overdue follow-ups and open cases at each month's end;
//! - the overdue list (逾期未访名单) on a date: every open case past its
//!   follow-up, most overdue first, by name and never by ID number, for the
//!   social workers to plan their visits.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use rust_xlsxwriter::{Format, Workbook, XlsxError};

use super::{
    AppState, HttpError, Peer, api, china_time, completion, peer_addr, shown, tier_zh, unit_zh,
};
use crate::audit::{Access, Channel};
use crate::projections::{IndicatorRow, OverdueList, Trends, today_in_china};
use crate::{auth, params};

/// The column headers of a ledger.
pub const LEDGER_HEADERS: [&str; 6] = ["指标", "单位", "完成数", "目标数", "完成率", "数据完整至"];

/// The column headers of the district's ledger.
pub const DISTRICT_LEDGER_HEADERS: [&str; 7] = [
    "工作站",
    "指标",
    "单位",
    "完成数",
    "目标数",
    "完成率",
    "数据完整至",
];

/// The column headers of an overdue list.
pub const OVERDUE_HEADERS: [&str; 10] = [
    "工作站",
    "姓名",
    "社区",
    "级别",
    "回访周期（天）",
    "上次走访",
    "应访日期",
    "逾期天数",
    "个案编号",
    "档案编号",
];

/// The byte order mark that tells Excel a CSV file is UTF-8.
const UTF8_BOM: &str = "\u{feff}";

/// A cell of a report: text, a number, or a completion written as a
/// percentage.
enum Cell {
    Text(String),
    Number(f64),
    Percent(Option<f64>),
    Empty,
}

/// What a report is written as.
#[derive(Debug, Clone, Copy)]
enum FileType {
    Csv,
    Xlsx,
}

fn ledger_rows(row: &IndicatorRow) -> Vec<Vec<Cell>> {
    let complete_through = china_time(row.complete_through_ms);
    row.values
        .iter()
        .map(|v| {
            vec![
                Cell::Text(v.label.to_string()),
                Cell::Text(unit_zh(v.unit).to_string()),
                Cell::Number(v.value),
                v.target.map_or(Cell::Empty, |t| Cell::Number(t as f64)),
                Cell::Percent(completion(v.value, v.target)),
                Cell::Text(complete_through.clone()),
            ]
        })
        .collect()
}

fn overdue_rows(state: &AppState, list: &OverdueList) -> Vec<Vec<Cell>> {
    let config = state.projections.config();
    list.cases
        .iter()
        .map(|case| {
            let station = config.station_name(&case.station_code);
            let community = config.community_name(&case.community_code);
            vec![
                Cell::Text(station.to_string()),
                Cell::Text(case.name.clone()),
                Cell::Text(community.to_string()),
                Cell::Text(tier_zh(case.tier).to_string()),
                Cell::Number(f64::from(case.interval_days)),
                Cell::Text(
                    case.last_visit
                        .map_or_else(|| "从未走访".to_string(), |d| d.to_string()),
                ),
                Cell::Text(case.due_on.to_string()),
                Cell::Number(case.days_overdue as f64),
                Cell::Text(case.case_id.to_string()),
                Cell::Text(case.file_number.clone()),
            ]
        })
        .collect()
}

/// The path segment that stands for every station of the roster, in place
/// of a station code: the bureau's district-wide reports.
pub const DISTRICT: &str = "district";

/// GET /reports/{station}/{period}.csv or .xlsx: the ledger;
/// GET /reports/{station}/overdue.csv or .xlsx?as_of=YYYY-MM-DD: the overdue
/// list. `{station}` may be `district` (bureau only): every station of the
/// roster, the ledger with a row per station and indicator and the
/// district's totals.
pub(super) async fn report(
    State(state): State<AppState>,
    headers: HeaderMap,
    peer: Peer,
    Path((station, file)): Path<(String, String)>,
    query: api::Pairs,
) -> Result<Response, HttpError> {
    let caller = state.caller(&headers)?;
    let reader = caller.clone();
    let (name, format) = file.rsplit_once('.').ok_or_else(|| {
        HttpError::BadRequest(
            "report: ask for {period}.csv, {period}.xlsx, overdue.csv or overdue.xlsx".into(),
        )
    })?;
    let format = match format {
        "csv" => FileType::Csv,
        "xlsx" => FileType::Xlsx,
        _ => {
            return Err(HttpError::BadRequest(format!(
                "report: format {format} unknown; ask for .csv or .xlsx"
            )));
        }
    };
    let asked = api::Params::from(query)?;
    let config = state.projections.config();
    let district = station == DISTRICT;
    let (stations, whose, stem) = if district {
        auth::authorize_district(&caller)?;
        (
            config.station_codes(),
            config.district.name.clone(),
            config.district.code.clone(),
        )
    } else {
        let stations = state.stations(&caller, vec![station.clone()])?;
        let Some(roster) = config.station(&station) else {
            return Err(HttpError::NotFound(format!(
                "station {station} is not in the roster"
            )));
        };
        (stations, roster.name.clone(), station.clone())
    };
    if name == "overdue" {
        let as_of = params::as_of(asked.one("as_of").unwrap_or_default())?;
        let from = peer_addr(peer);
        let mut params = vec![("station".to_string(), station.clone())];
        params.extend(asked.pairs());
        let read = file.clone();
        let list = state
            .read(move |p| {
                let list = p.overdue(as_of, &stations, None)?;
                p.audit_read(Access {
                    caller: reader,
                    from,
                    via: Channel::Report,
                    read,
                    params,
                    cases: list.cases.iter().map(|c| c.case_id).collect(),
                    revealed: false,
                })?;
                Ok(list)
            })
            .await?;
        let title = format!("{whose} 逾期未访名单（截至 {as_of}）");
        let filename = format!("{stem}-overdue-{as_of}");
        let rows = overdue_rows(&state, &list);
        let widths = [12.0, 12.0, 16.0, 8.0, 14.0, 12.0, 12.0, 10.0, 36.0];
        let sheet = Sheet {
            name: "逾期未访",
            title: &title,
            headers: &OVERDUE_HEADERS,
            rows: &rows,
            widths: &widths,
        };
        return sheet.download(&filename, format);
    }
    let period = params::period(name)?;
    let today = today_in_china();
    let (table, trends) = state
        .read(move |p| {
            let trends = match format {
                FileType::Xlsx => Some(p.trends(&stations, period.last_day().min(today), today)?),
                FileType::Csv => None,
            };
            Ok((p.indicators(period, &stations)?, trends))
        })
        .await?;
    let trend_rows = trends
        .as_ref()
        .map(|t| trend_rows(t, district))
        .unwrap_or_default();
    let trend_headers: Vec<String> = trends.as_ref().map(trend_headers).unwrap_or_default();
    let trend_headers: Vec<&str> = trend_headers.iter().map(String::as_str).collect();
    let trend_widths: Vec<f64> = trend_headers
        .iter()
        .enumerate()
        .map(|(i, _)| if i < 2 { 18.0 } else { 9.0 })
        .collect();
    let trend_title = format!("{whose} 近12个月趋势");
    let trend_sheet = Sheet {
        name: "近12个月趋势",
        title: &trend_title,
        headers: &trend_headers,
        rows: &trend_rows,
        widths: &trend_widths,
    };
    let title = format!("{whose} {} 台账", table.period);
    let filename = format!("{stem}-{}", table.period);
    if district {
        let rows = district_rows(&whose, &table.rows);
        let widths = [12.0, 18.0, 8.0, 10.0, 10.0, 10.0, 18.0];
        let sheet = Sheet {
            name: "台账",
            title: &title,
            headers: &DISTRICT_LEDGER_HEADERS,
            rows: &rows,
            widths: &widths,
        };
        return sheet.download_with(&filename, format, &[&trend_sheet]);
    }
    let row = table
        .rows
        .first()
        .ok_or_else(|| HttpError::NotFound(format!("no indicators for station {station}")))?;
    let rows = ledger_rows(row);
    let widths = [18.0, 8.0, 10.0, 10.0, 10.0, 18.0];
    let sheet = Sheet {
        name: "台账",
        title: &title,
        headers: &LEDGER_HEADERS,
        rows: &rows,
        widths: &widths,
    };
    sheet.download_with(&filename, format, &[&trend_sheet])
}

/// The headers of the trends sheet: whose, what, the twelve months, the
/// monthly target.
fn trend_headers(trends: &Trends) -> Vec<String> {
    let mut headers = vec!["工作站".to_string(), "指标".to_string()];
    headers.extend(trends.months.iter().cloned());
    headers.push("月度目标".into());
    headers
}

/// The rows of the trends sheet: each station's indicators, overdue
/// follow-ups and open cases month by month; for the district, its sums
/// after them.
fn trend_rows(trends: &Trends, district: bool) -> Vec<Vec<Cell>> {
    let mut rows = Vec::new();
    let whose = trends
        .stations
        .iter()
        .chain(district.then_some(&trends.district));
    for station in whose {
        for metric in &station.metrics {
            let mut row = vec![
                Cell::Text(station.station_name.clone()),
                Cell::Text(metric.label.to_string()),
            ];
            row.extend(metric.values.iter().map(|v| Cell::Number(*v)));
            row.push(
                metric
                    .target
                    .map_or(Cell::Empty, |t| Cell::Number(t as f64)),
            );
            rows.push(row);
        }
        for (label, values) in [
            (
                "逾期未访（月末）",
                station
                    .overdue
                    .iter()
                    .map(|&n| n as f64)
                    .collect::<Vec<_>>(),
            ),
            (
                "在册个案（月末）",
                station.open_cases.iter().map(|&n| n as f64).collect(),
            ),
        ] {
            let mut row = vec![
                Cell::Text(station.station_name.clone()),
                Cell::Text(label.to_string()),
            ];
            row.extend(values.into_iter().map(Cell::Number));
            row.push(Cell::Empty);
            rows.push(row);
        }
    }
    rows
}

/// A report's one table, as either file type writes it.
struct Sheet<'a> {
    name: &'a str,
    title: &'a str,
    headers: &'a [&'a str],
    rows: &'a [Vec<Cell>],
    widths: &'a [f64],
}

impl Sheet<'_> {
    fn download(&self, filename: &str, format: FileType) -> Result<Response, HttpError> {
        self.download_with(filename, format, &[])
    }

    /// As [`Sheet::download`]; an XLSX file has the sheets of `more` after
    /// this one (a CSV file is this one table).
    fn download_with(
        &self,
        filename: &str,
        format: FileType,
        more: &[&Sheet<'_>],
    ) -> Result<Response, HttpError> {
        let body = match format {
            FileType::Csv => csv(self.headers, self.rows),
            FileType::Xlsx => {
                let mut sheets = vec![self];
                sheets.extend_from_slice(more);
                xlsx(&sheets)?
            }
        };
        Ok(download(body, filename, format))
    }
}

/// The district's ledger: each station's rows, then the district's totals
/// (values and targets summed; complete through the least complete
/// station).
fn district_rows(district: &str, rows: &[IndicatorRow]) -> Vec<Vec<Cell>> {
    let mut out = Vec::new();
    for row in rows {
        for mut line in ledger_rows(row) {
            line.insert(0, Cell::Text(row.station_name.clone()));
            out.push(line);
        }
    }
    let Some(first) = rows.first() else {
        return out;
    };
    let least_complete = rows.iter().map(|r| r.complete_through_ms).min().flatten();
    for value in &first.values {
        let values = rows
            .iter()
            .filter_map(|r| r.values.iter().find(|v| v.metric == value.metric));
        let sum: f64 = values.clone().map(|v| v.value).sum();
        let target: Option<i64> = values.map(|v| v.target).sum();
        out.push(vec![
            Cell::Text(format!("{district}合计")),
            Cell::Text(value.label.to_string()),
            Cell::Text(unit_zh(value.unit).to_string()),
            Cell::Number(sum),
            target.map_or(Cell::Empty, |t| Cell::Number(t as f64)),
            Cell::Percent(completion(sum, target)),
            Cell::Text(china_time(least_complete)),
        ]);
    }
    out
}

fn download(body: Vec<u8>, name: &str, file: FileType) -> Response {
    let (content_type, ext) = match file {
        FileType::Csv => ("text/csv; charset=utf-8", "csv"),
        FileType::Xlsx => (
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            "xlsx",
        ),
    };
    let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{name}.{ext}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("attachment"));
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response()
}

/// A CSV field, quoted when it must be. Text that a spreadsheet would take
/// for a formula (it starts with `=`, `+`, `-`, `@`, a tab or a carriage
/// return, or their full-width forms) is written behind a `'`, so Excel and
/// WPS show a name such as `=HYPERLINK(…)` as the text it is.
fn field(text: &str) -> String {
    const FORMULA_STARTS: [char; 10] = ['=', '+', '-', '@', '\t', '\r', '＝', '＋', '－', '＠'];
    let text = if text.starts_with(FORMULA_STARTS) {
        std::borrow::Cow::Owned(format!("'{text}"))
    } else {
        std::borrow::Cow::Borrowed(text)
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.into_owned()
    }
}

/// A report as CSV: numbers as the dashboard shows them (to one decimal),
/// completions as percentages to one decimal.
fn csv(headers: &[&str], rows: &[Vec<Cell>]) -> Vec<u8> {
    let mut out = String::from(UTF8_BOM);
    out.push_str(&headers.join(","));
    out.push_str("\r\n");
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .map(|cell| match cell {
                Cell::Text(text) => field(text),
                Cell::Number(value) => shown(*value),
                Cell::Percent(Some(c)) => format!("{c:.1}%"),
                Cell::Percent(None) => "—".to_string(),
                Cell::Empty => String::new(),
            })
            .collect();
        out.push_str(&cells.join(","));
        out.push_str("\r\n");
    }
    out.into_bytes()
}

/// A report as a workbook, a sheet per table: the title, a blank row, the
/// headers in bold, then the rows; numbers stay numbers.
fn xlsx(sheets: &[&Sheet<'_>]) -> Result<Vec<u8>, HttpError> {
    let written = || -> Result<Vec<u8>, XlsxError> {
        let mut workbook = Workbook::new();
        for table in sheets {
            write_sheet(workbook.add_worksheet(), table)?;
        }
        workbook.save_to_buffer()
    };
    written().map_err(|e| HttpError::Internal(format!("the XLSX report could not be written: {e}")))
}

/// Writes one table into `sheet`.
fn write_sheet(sheet: &mut rust_xlsxwriter::Worksheet, table: &Sheet<'_>) -> Result<(), XlsxError> {
    let Sheet {
        name: sheet_name,
        title,
        headers,
        rows,
        widths,
    } = *table;
    {
        sheet.set_name(sheet_name)?;
        let bold = Format::new().set_bold();
        let percent_format = Format::new().set_num_format("0.0%");
        sheet.write_string_with_format(0, 0, title, &bold)?;
        for (col, header) in (0u16..).zip(headers) {
            sheet.write_string_with_format(2, col, *header, &bold)?;
        }
        for (row, cells) in (3u32..).zip(rows) {
            for (col, cell) in (0u16..).zip(cells) {
                match cell {
                    Cell::Text(text) => {
                        sheet.write_string(row, col, text)?;
                    }
                    Cell::Number(value) => {
                        sheet.write_number(row, col, *value)?;
                    }
                    Cell::Percent(Some(c)) => {
                        sheet.write_number_with_format(row, col, c / 100.0, &percent_format)?;
                    }
                    Cell::Percent(None) | Cell::Empty => {}
                }
            }
        }
        for (col, width) in (0u16..).zip(widths) {
            sheet.set_column_width(col, *width)?;
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn csv_rounds_figures_as_the_dashboard_shows_them_and_quotes_fields() {
        let rows = vec![vec![
            Cell::Text("志愿服务(小时)".into()),
            Cell::Number(53.416_666_666),
            Cell::Number(120.0),
            Cell::Percent(Some(44.513_888)),
            Cell::Percent(None),
            Cell::Empty,
            Cell::Text("达瓦, \"小达\"".into()),
        ]];
        let bytes = csv(&["a", "b", "c", "d", "e", "f", "g"], &rows);
        let text = String::from_utf8(bytes).unwrap();
        assert_eq!(
            text,
            "\u{feff}a,b,c,d,e,f,g\r\n志愿服务(小时),53.4,120,44.5%,—,,\"达瓦, \"\"小达\"\"\"\r\n"
        );
    }

    #[test]
    fn csv_text_a_spreadsheet_would_run_as_a_formula_stays_text() {
        let names = [
            (
                "=HYPERLINK(\"http://x\",\"y\")",
                "\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\"",
            ),
            ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"),
            ("@SUM(A1:A9)", "'@SUM(A1:A9)"),
            ("-2+3", "'-2+3"),
            ("\t=1", "'\t=1"),
            ("＝1+1", "'＝1+1"),
            ("次仁-卓玛 = 2", "次仁-卓玛 = 2"),
        ];
        for (name, written) in names {
            let bytes = csv(&["name"], &[vec![Cell::Text(name.into())]]);
            let text = String::from_utf8(bytes).unwrap();
            assert_eq!(text, format!("\u{feff}name\r\n{written}\r\n"), "{name}");
        }
        // Figures are not text: a negative number is written as a number.
        let bytes = csv(&["n"], &[vec![Cell::Number(-2.0)]]);
        assert_eq!(String::from_utf8(bytes).unwrap(), "\u{feff}n\r\n-2\r\n");
    }
}
