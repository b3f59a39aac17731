//! The reports of one station, as CSV (UTF-8 with a BOM, so Excel reads the
//! Chinese) or XLSX:
//!
//! - the ledger (台账) of a month, quarter or year: one row per indicator
//!   with its count, target, completion and how far the station's data is
//!   complete;
//! - the overdue list (逾期未访名单) on a date: every open case past its
//!   follow-up, most overdue first, by name and never by ID number, for the
//!   social workers to plan their visits.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use rust_xlsxwriter::{Format, Workbook, XlsxError};

use super::{AppState, HttpError, api, china_time, completion, shown, tier_zh, unit_zh};
use crate::projections::{IndicatorRow, OverdueList};

/// The column headers of a ledger.
pub const LEDGER_HEADERS: [&str; 6] = ["指标", "单位", "完成数", "目标数", "完成率", "数据完整至"];

/// The column headers of an overdue list.
pub const OVERDUE_HEADERS: [&str; 9] = [
    "工作站",
    "姓名",
    "社区",
    "级别",
    "回访周期（天）",
    "上次走访",
    "应访日期",
    "逾期天数",
    "个案编号",
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
            ]
        })
        .collect()
}

/// GET /reports/{station}/{period}.csv or .xlsx: the ledger;
/// GET /reports/{station}/overdue.csv or .xlsx?as_of=YYYY-MM-DD: the overdue
/// list.
pub(super) async fn report(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((station, file)): Path<(String, String)>,
    query: api::Pairs,
) -> Result<Response, HttpError> {
    let caller = state.caller(&headers)?;
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
    let params = api::Params::from(query)?;
    let stations = state.stations(&caller, vec![station.clone()])?;
    let Some(roster) = state.projections.config().station(&station) else {
        return Err(HttpError::NotFound(format!(
            "station {station} is not in the roster"
        )));
    };
    let station_name = roster.name.clone();
    if name == "overdue" {
        let as_of = api::as_of(params.one("as_of"))?;
        let list = state
            .read(move |p| p.overdue(as_of, &stations, None))
            .await?;
        let title = format!("{station_name} 逾期未访名单（截至 {as_of}）");
        let filename = format!("{station}-overdue-{as_of}");
        let rows = overdue_rows(&state, &list);
        return match format {
            FileType::Csv => Ok(download(csv(&OVERDUE_HEADERS, &rows), &filename, format)),
            FileType::Xlsx => {
                let widths = [12.0, 12.0, 16.0, 8.0, 14.0, 12.0, 12.0, 10.0, 36.0];
                let body = xlsx("逾期未访", &title, &OVERDUE_HEADERS, &rows, &widths)?;
                Ok(download(body, &filename, format))
            }
        };
    }
    let period = api::period(Some(name))?;
    let table = state.read(move |p| p.indicators(period, &stations)).await?;
    let row = table
        .rows
        .first()
        .ok_or_else(|| HttpError::NotFound(format!("no indicators for station {station}")))?;
    let title = format!("{} {} 台账", row.station_name, table.period);
    let filename = format!("{}-{}", row.station_code, table.period);
    let rows = ledger_rows(row);
    match format {
        FileType::Csv => Ok(download(csv(&LEDGER_HEADERS, &rows), &filename, format)),
        FileType::Xlsx => {
            let widths = [18.0, 8.0, 10.0, 10.0, 10.0, 18.0];
            let body = xlsx("台账", &title, &LEDGER_HEADERS, &rows, &widths)?;
            Ok(download(body, &filename, format))
        }
    }
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

/// A CSV field, quoted when it must be.
fn field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
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

/// A report as a workbook of one sheet: the title, a blank row, the
/// headers in bold, then the rows; numbers stay numbers.
fn xlsx(
    sheet_name: &str,
    title: &str,
    headers: &[&str],
    rows: &[Vec<Cell>],
    widths: &[f64],
) -> Result<Vec<u8>, HttpError> {
    let written = || -> Result<Vec<u8>, XlsxError> {
        let mut workbook = Workbook::new();
        let sheet = workbook.add_worksheet();
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
        workbook.save_to_buffer()
    };
    written().map_err(|e| HttpError::Internal(format!("the XLSX report could not be written: {e}")))
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
}
