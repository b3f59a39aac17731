//! The ledger (台账) of one station for one month, quarter or year: one row
//! per indicator with its count, target, completion and how far the
//! station's data is complete, as CSV (UTF-8 with a BOM, so Excel reads the
//! Chinese) or XLSX.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use rust_xlsxwriter::{Format, Workbook, XlsxError};

use super::{AppState, HttpError, api, china_time, completion, unit_zh};
use crate::projections::IndicatorRow;

/// The column headers of a ledger.
pub const LEDGER_HEADERS: [&str; 6] = ["指标", "单位", "完成数", "目标数", "完成率", "数据完整至"];

/// The byte order mark that tells Excel a CSV file is UTF-8.
const UTF8_BOM: &str = "\u{feff}";

/// One ledger row, as text and as the number it stands for.
struct LedgerLine {
    label: String,
    unit: &'static str,
    value: f64,
    target: Option<i64>,
    completion: Option<f64>,
    complete_through: String,
}

fn lines(row: &IndicatorRow) -> Vec<LedgerLine> {
    let complete_through = china_time(row.complete_through_ms);
    row.values
        .iter()
        .map(|v| LedgerLine {
            label: v.label.to_string(),
            unit: unit_zh(v.unit),
            value: v.value,
            target: v.target,
            completion: completion(v.value, v.target),
            complete_through: complete_through.clone(),
        })
        .collect()
}

/// GET /reports/{station}/{period}.csv or .xlsx
pub(super) async fn ledger(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((station, file)): Path<(String, String)>,
) -> Result<Response, HttpError> {
    let caller = state.caller(&headers)?;
    let (period, format) = file.rsplit_once('.').ok_or_else(|| {
        HttpError::BadRequest("report: ask for {period}.csv or {period}.xlsx".into())
    })?;
    if format != "csv" && format != "xlsx" {
        return Err(HttpError::BadRequest(format!(
            "report: format {format} unknown; ask for .csv or .xlsx"
        )));
    }
    let period = api::period(Some(period))?;
    let stations = state.stations(&caller, vec![station.clone()])?;
    if state.projections.config().station(&station).is_none() {
        return Err(HttpError::NotFound(format!(
            "station {station} is not in the roster"
        )));
    }
    let table = state.read(move |p| p.indicators(period, &stations)).await?;
    let row = table
        .rows
        .first()
        .ok_or_else(|| HttpError::NotFound(format!("no indicators for station {station}")))?;
    let title = format!("{} {} 台账", row.station_name, table.period);
    let filename = format!("{}-{}", row.station_code, table.period);
    let lines = lines(row);
    if format == "csv" {
        let body = csv(&lines);
        Ok(download(
            body.into_bytes(),
            "text/csv; charset=utf-8",
            &filename,
            "csv",
        ))
    } else {
        let body = xlsx(&title, &lines).map_err(|e| {
            HttpError::Internal(format!("the XLSX ledger could not be written: {e}"))
        })?;
        Ok(download(
            body,
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            &filename,
            "xlsx",
        ))
    }
}

fn download(body: Vec<u8>, content_type: &'static str, name: &str, ext: &str) -> Response {
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

fn percent(completion: Option<f64>) -> String {
    completion.map_or_else(|| "—".to_string(), |c| format!("{c:.1}%"))
}

fn csv(lines: &[LedgerLine]) -> String {
    let mut out = String::from(UTF8_BOM);
    out.push_str(&LEDGER_HEADERS.join(","));
    out.push_str("\r\n");
    for line in lines {
        let cells = [
            field(&line.label),
            field(line.unit),
            line.value.to_string(),
            line.target.map(|t| t.to_string()).unwrap_or_default(),
            percent(line.completion),
            field(&line.complete_through),
        ];
        out.push_str(&cells.join(","));
        out.push_str("\r\n");
    }
    out
}

fn xlsx(title: &str, lines: &[LedgerLine]) -> Result<Vec<u8>, XlsxError> {
    let mut workbook = Workbook::new();
    let sheet = workbook.add_worksheet();
    sheet.set_name("台账")?;
    let bold = Format::new().set_bold();
    let percent_format = Format::new().set_num_format("0.0%");
    sheet.write_string_with_format(0, 0, title, &bold)?;
    for (col, header) in (0u16..).zip(LEDGER_HEADERS) {
        sheet.write_string_with_format(2, col, header, &bold)?;
    }
    for (row, line) in (3u32..).zip(lines) {
        sheet.write_string(row, 0, &line.label)?;
        sheet.write_string(row, 1, line.unit)?;
        sheet.write_number(row, 2, line.value)?;
        if let Some(target) = line.target {
            sheet.write_number(row, 3, target as f64)?;
        }
        if let Some(completion) = line.completion {
            sheet.write_number_with_format(row, 4, completion / 100.0, &percent_format)?;
        }
        sheet.write_string(row, 5, &line.complete_through)?;
    }
    sheet.set_column_width(0, 18)?;
    sheet.set_column_width(5, 18)?;
    workbook.save_to_buffer()
}
