//! The dashboard: one server-rendered page with no external asset (inline
//! CSS and SVG), in Chinese, showing each station's indicators against
//! their targets, the overdue follow-ups, and data completeness with sync
//! health; and the login that sets the session cookie from a bureau token.
//!
//! The page names overdue cases by name only: no ID number, address or
//! phone reaches it. Every string from the roster or the projections is
//! HTML-escaped.

use std::fmt::Write as _;

use axum::Form;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};

use super::{
    AppState, HttpError, Peer, SESSION_COOKIE, china_time, completion, escape, peer_addr,
    session_token, shown, tier_zh,
};
use crate::audit::{Access, Channel};
use crate::projections::period::Period;
use crate::projections::{
    DuplicateFiles, IndicatorTable, OverdueList, SyncHealth, WipeStatus, end_of_day_ms,
    today_in_china,
};
use crate::{auth, guard, params};

const STYLE: &str = "body{font-family:'Noto Sans CJK SC','Microsoft YaHei','Noto Sans Tibetan','Microsoft Himalaya',sans-serif;margin:0;background:#f5f6f8;color:#222}\
header{background:#9b1c1c;color:#fff;padding:12px 24px;display:flex;justify-content:space-between;align-items:center}\
header a,header button{color:#fff}main{padding:16px 24px}section{background:#fff;border-radius:6px;padding:12px 16px;margin-bottom:16px}\
.stations{display:grid;grid-template-columns:repeat(auto-fill,minmax(360px,1fr));gap:12px}\
.station{border:1px solid #ddd;border-radius:6px;padding:8px}.bo{color:#555;margin-left:8px}\
table{border-collapse:collapse;width:100%}th,td{border:1px solid #ddd;padding:4px 8px;text-align:left}th{background:#f0f0f0}\
.warn{color:#b45309}.ok{color:#047857}.muted{color:#6b7280}form.inline{display:inline}table.counts{margin-bottom:12px}";

/// The session cookie's attributes: not readable by scripts, never sent
/// from another site.
const COOKIE_ATTRIBUTES: &str = "HttpOnly; SameSite=Strict; Path=/";

fn document(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{}</title><style>{STYLE}</style></head><body>{body}</body></html>",
        escape(title)
    )
}

fn login_form(error: Option<&str>) -> String {
    let error = error
        .map(|e| format!("<p class=\"warn\" role=\"alert\">{}</p>", escape(e)))
        .unwrap_or_default();
    document(
        "登录 · 社会工作站数据看板",
        &format!(
            "<main><section style=\"max-width:420px;margin:64px auto\"><h1>社会工作站数据看板</h1>\
             {error}<form method=\"post\" action=\"/login\"><p><label for=\"token\">民政局令牌</label></p>\
             <p><input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"off\" style=\"width:100%\" required></p>\
             <p><button type=\"submit\">登录</button></p></form></section></main>"
        ),
    )
}

/// GET /login
pub(super) async fn login_page() -> Html<String> {
    Html(login_form(None))
}

/// The login form.
#[derive(Debug, serde::Deserialize)]
pub(super) struct Login {
    /// The bureau's bearer token.
    token: String,
    /// The dashboard page to land on, such as `/?period=2025-03`; the
    /// dashboard of the current month when absent or not a local path.
    #[serde(default)]
    next: Option<String>,
}

/// `next` when it is a path of the dashboard itself, so a login never
/// sends the browser elsewhere.
fn landing(next: Option<&str>) -> &str {
    match next {
        Some(next)
            if (next == "/" || next.starts_with("/?"))
                && next.chars().all(|c| c.is_ascii_graphic() && c != '\\') =>
        {
            next
        }
        _ => "/",
    }
}

/// Whether a form was posted from the dashboard's own pages: a browser
/// names the page's origin in `Origin`, which must then be this host, as
/// the request names it in `Host` or, behind a reverse proxy that rewrites
/// `Host`, in `X-Forwarded-Host` (a form posted from another site cannot
/// set that header). A client that sends no `Origin` (not a browser)
/// passes; the session cookie is `SameSite=Strict` besides.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Some((_, origin_host)) = origin.to_str().ok().and_then(|o| o.split_once("://")) else {
        return false;
    };
    let forwarded = headers
        .get("x-forwarded-host")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.split(',').next());
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    [host, forwarded]
        .into_iter()
        .flatten()
        .any(|h| h.trim().eq_ignore_ascii_case(origin_host))
}

/// The refusal of a form posted from another site.
fn cross_site() -> Response {
    (
        StatusCode::FORBIDDEN,
        Html(document(
            "社会工作站数据看板",
            "<main><section><p class=\"warn\">请从看板页面提交（跨站请求已拒绝）</p>\
             <p><a href=\"/login\">登录</a></p></section></main>",
        )),
    )
        .into_response()
}

/// POST /login: a bureau token sets the session cookie; anything else is
/// refused with the form again, and a form posted from another site is
/// refused outright.
pub(super) async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    login: Result<Form<Login>, FormRejection>,
) -> Response {
    if !same_origin(&headers) {
        return cross_site();
    }
    let refused =
        |text: &str| (StatusCode::UNAUTHORIZED, Html(login_form(Some(text)))).into_response();
    let Ok(Form(login)) = login else {
        return refused("请填写令牌");
    };
    let token = login.token.trim().to_string();
    let header = format!("Bearer {token}");
    if token.is_empty()
        || !token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.')
    {
        return refused("令牌无效");
    }
    // The token id is counted here, since it came in the form: guesses at
    // one token's secret are held whichever addresses they come from (the
    // addresses themselves are counted in front of every route).
    let token_id = guard::presented_token_id(&header);
    if state.refusals.admit(None, token_id).is_err() {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            Html(login_form(Some("尝试次数过多，请稍后再试"))),
        )
            .into_response();
    }
    let caller = match auth::authenticate(state.projections.store(), Some(&header)) {
        Ok(caller) => caller,
        Err(error) => {
            state.refusals.refused(None, token_id, &error.to_string());
            return refused("令牌无效或已吊销");
        }
    };
    match auth::authorize_district(&caller) {
        Ok(()) => {
            let session = state.sessions.open(token);
            let secure = if state.secure { "; Secure" } else { "" };
            let cookie = format!(
                "{SESSION_COOKIE}={session}; Max-Age={}; {COOKIE_ATTRIBUTES}{secure}",
                state.sessions.lifetime().as_secs()
            );
            match HeaderValue::from_str(&cookie) {
                Ok(cookie) => (
                    [(header::SET_COOKIE, cookie)],
                    Redirect::to(landing(login.next.as_deref())),
                )
                    .into_response(),
                Err(_) => refused("令牌无效"),
            }
        }
        Err(_) => refused("看板只接受民政局令牌，设备令牌不能登录"),
    }
}

/// POST /logout: ends the session on the hub and clears its cookie, unless
/// posted from another site.
pub(super) async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if !same_origin(&headers) {
        return cross_site();
    }
    if let Some(id) = session_token(&headers) {
        state.sessions.end(&id);
    }
    let secure = if state.secure { "; Secure" } else { "" };
    let cookie = format!("{SESSION_COOKIE}=; Max-Age=0; {COOKIE_ATTRIBUTES}{secure}");
    match HeaderValue::from_str(&cookie) {
        Ok(cookie) => ([(header::SET_COOKIE, cookie)], Redirect::to("/login")).into_response(),
        Err(_) => Redirect::to("/login").into_response(),
    }
}

/// GET /?period=2026-11&as_of=2026-11-30: the dashboard, for a bureau
/// session; anyone else is sent to the login.
pub(super) async fn page(
    State(state): State<AppState>,
    headers: HeaderMap,
    peer: Peer,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, HttpError> {
    let Some(caller) = state
        .caller(&headers)
        .ok()
        .filter(|caller| auth::authorize_district(caller).is_ok())
    else {
        return Ok(Redirect::to("/login").into_response());
    };
    let Query(pairs) = query.map_err(|e| HttpError::BadRequest(format!("query string: {e}")))?;
    let one = |name: &str| {
        pairs
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    let today = today_in_china();
    let period = match one("period") {
        Some(text) => params::period(text)?,
        None => Period::of_date(today)[0],
    };
    let as_of = params::as_of(one("as_of").unwrap_or_default())?;
    let stations = state.projections.config().station_codes();
    let from = peer_addr(peer);
    let (table, overdue, health, duplicates) = state
        .read(move |p| {
            let overdue = p.overdue(as_of, &stations, Some(OVERDUE_SHOWN))?;
            // The page names the overdue cases' persons.
            p.audit_read(Access {
                caller,
                from,
                via: Channel::Dashboard,
                read: "dashboard".into(),
                params: pairs,
                cases: overdue.cases.iter().map(|c| c.case_id).collect(),
                revealed: false,
            })?;
            Ok((
                p.indicators(period, &stations)?,
                overdue,
                p.sync_health(&stations)?,
                p.duplicates(&stations)?,
            ))
        })
        .await?;
    let body = render(&state, &table, &overdue, &health, &duplicates);
    Ok(Html(document("社会工作站数据看板", &body)).into_response())
}

/// The most overdue cases the page lists; the overdue report of each
/// station lists them all.
const OVERDUE_SHOWN: usize = 100;

fn render(
    state: &AppState,
    table: &IndicatorTable,
    overdue: &OverdueList,
    health: &SyncHealth,
    duplicates: &DuplicateFiles,
) -> String {
    let config = state.projections.config();
    let mut out = String::new();
    let district = &config.district;
    let _ = write!(
        out,
        "<header><div><strong>{}</strong>{} 社会工作站数据看板</div>\
         <form class=\"inline\" method=\"post\" action=\"/logout\"><button type=\"submit\">退出登录</button></form></header><main>",
        escape(&district.name),
        district
            .name_bo
            .as_deref()
            .map(|bo| format!("<span class=\"bo\" lang=\"bo\">{}</span>", escape(bo)))
            .unwrap_or_default(),
    );
    let _ = write!(
        out,
        "<section><form method=\"get\" action=\"/\">统计周期 <input name=\"period\" value=\"{}\" size=\"8\"> \
         逾期截至 <input name=\"as_of\" value=\"{}\" size=\"10\"> <button type=\"submit\">查看</button></form>\
         <p>周期 {} 至 {}；数据计算至第 {} 条事件</p>\
         <p>全区台账 <a href=\"/reports/district/{period}.csv\">CSV</a> · <a href=\"/reports/district/{period}.xlsx\">Excel</a>\
          · 全区逾期名单 <a href=\"/reports/district/overdue.csv?as_of={as_of}\">CSV</a> · \
         <a href=\"/reports/district/overdue.xlsx?as_of={as_of}\">Excel</a></p></section>",
        escape(&table.period),
        overdue.as_of,
        table.first_day,
        table.last_day,
        table.computed_through_hub_seq,
        period = escape(&table.period),
        as_of = overdue.as_of,
    );

    out.push_str("<section><h2>指标完成情况</h2><div class=\"stations\">");
    // A period not over yet cannot be complete; say so rather than warn.
    let running = end_of_day_ms(table.last_day) > chrono::Utc::now().timestamp_millis();
    for row in &table.rows {
        let _ = write!(
            out,
            "<div class=\"station\" data-station=\"{code}\"><h3>{name}{bo}</h3>\
             <p>数据完整至 {through} {state}</p>\
             <p><a href=\"/reports/{code}/{period}.csv\">台账 CSV</a> · <a href=\"/reports/{code}/{period}.xlsx\">台账 Excel</a></p>",
            code = escape(&row.station_code),
            name = escape(&row.station_name),
            bo = row
                .station_name_bo
                .as_deref()
                .map(|bo| format!("<span class=\"bo\" lang=\"bo\">{}</span>", escape(bo)))
                .unwrap_or_default(),
            through = escape(&china_time(row.complete_through_ms)),
            state = if row.complete {
                "<span class=\"ok\">（完整）</span>"
            } else if running {
                "<span class=\"muted\">（本期进行中）</span>"
            } else {
                "<span class=\"warn\">（尚有数据未上传）</span>"
            },
            period = escape(&table.period),
        );
        let bar_height = 22;
        let height = bar_height * row.values.len().max(1);
        let _ = write!(
            out,
            "<svg role=\"img\" aria-label=\"{} 指标完成情况\" width=\"100%\" viewBox=\"0 0 360 {height}\" xmlns=\"http://www.w3.org/2000/svg\">",
            escape(&row.station_name)
        );
        for (i, value) in row.values.iter().enumerate() {
            let y = i * bar_height;
            let share = completion(value.value, value.target).map(|c| (c / 100.0).clamp(0.0, 1.0));
            let width = share.map_or(0.0, |s| s * 140.0);
            let colour = match share {
                Some(s) if s >= 1.0 => "#047857",
                Some(_) => "#d97706",
                None => "#9ca3af",
            };
            let figure = match value.target {
                Some(target) => format!("{}/{}", shown(value.value), target),
                None => shown(value.value),
            };
            let _ = write!(
                out,
                "<g data-metric=\"{metric}\"><text x=\"0\" y=\"{ty}\" font-size=\"12\">{label}</text>\
                 <rect x=\"130\" y=\"{ry}\" width=\"140\" height=\"14\" fill=\"#eee\"/>\
                 <rect x=\"130\" y=\"{ry}\" width=\"{width:.1}\" height=\"14\" fill=\"{colour}\"/>\
                 <text x=\"276\" y=\"{ty}\" font-size=\"12\" class=\"figure\">{figure}</text></g>",
                metric = value.metric.name(),
                ty = y + 15,
                ry = y + 4,
                label = escape(value.label),
                figure = escape(&figure),
            );
        }
        out.push_str("</svg></div>");
    }
    out.push_str("</div></section>");

    let _ = write!(
        out,
        "<section><h2>逾期未访（截至 {as_of}）</h2><table class=\"counts\"><thead><tr><th>工作站</th><th>逾期个案</th>\
         <th>高风险</th><th>重点</th><th>一般</th><th>名单</th></tr></thead><tbody>",
        as_of = overdue.as_of
    );
    for count in &overdue.stations {
        let name = config.station_name(&count.station_code);
        let _ = write!(
            out,
            "<tr data-station=\"{code}\"><td>{name}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td><a href=\"/reports/{code}/overdue.csv?as_of={as_of}\">CSV</a> · \
             <a href=\"/reports/{code}/overdue.xlsx?as_of={as_of}\">Excel</a></td></tr>",
            count.overdue,
            count.high_risk,
            count.key,
            count.general,
            code = escape(&count.station_code),
            name = escape(name),
            as_of = overdue.as_of,
        );
    }
    out.push_str("</tbody></table>");
    if overdue.total > overdue.cases.len() as u64 {
        let _ = write!(
            out,
            "<p class=\"muted\">共 {} 例逾期，下表列出逾期最久的 {} 例；完整名单见各站的 CSV 或 Excel。</p>",
            overdue.total,
            overdue.cases.len()
        );
    }
    out.push_str(
        "<table><thead><tr><th>工作站</th><th>档案编号</th><th>姓名</th><th>社区</th><th>级别</th><th>应访日期</th>\
         <th>逾期天数</th><th>上次走访</th></tr></thead><tbody>",
    );
    if overdue.cases.is_empty() {
        out.push_str("<tr><td colspan=\"8\">无逾期个案</td></tr>");
    }
    for case in &overdue.cases {
        let station = config.station_name(&case.station_code);
        let community = config.community_name(&case.community_code);
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(station),
            escape(&case.file_number),
            escape(&case.name),
            escape(community),
            tier_zh(case.tier),
            case.due_on,
            case.days_overdue,
            case.last_visit
                .map_or_else(|| "从未走访".to_string(), |d| d.to_string()),
        );
    }
    out.push_str("</tbody></table></section>");

    out.push_str(
        "<section><h2>数据完整性与同步状况</h2><table><thead><tr><th>工作站</th><th>设备数</th><th>数据完整至</th>\
         <th>已入库事件</th><th>隔离事件</th><th>待关联事件</th><th>已作废事件</th><th>等级冲突</th><th>重复建档</th></tr></thead><tbody>",
    );
    for station in &health.stations {
        let _ = write!(
            out,
            "<tr data-station=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&station.station_code),
            escape(&station.station_name),
            station.devices,
            escape(&china_time(station.complete_through_ms)),
            station.events_logged,
            station.quarantined,
            station.held_events,
            station.voided_events,
            station.tier_conflicts,
            station.duplicate_files,
        );
    }
    out.push_str("</tbody></table>");

    // Files opened twice for one person at one station (two offline
    // phones): by case id, never the person.
    if !duplicates.files.is_empty() {
        out.push_str(
            "<h3>重复建档</h3><table class=\"duplicates\"><thead><tr><th>工作站</th><th>社区</th>\
             <th>重复档案</th><th>档案编号</th><th>建档日期</th><th>原档案</th><th>原档案编号</th><th>原建档日期</th></tr></thead><tbody>",
        );
        for file in &duplicates.files {
            let _ = write!(
                out,
                "<tr data-station=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&file.station_code),
                escape(
                    &config
                        .station(&file.station_code)
                        .map(|s| s.name.clone())
                        .unwrap_or_default()
                ),
                escape(&file.community_code),
                file.case_id,
                escape(&file.file_number),
                file.opened_on,
                file.duplicate_of,
                escape(&file.duplicate_of_file_number),
                file.duplicate_of_opened_on,
            );
        }
        out.push_str("</tbody></table>");
    }

    // Each device: whether it still holds entries the hub lacks, and since
    // when it has not been heard from.
    let now = chrono::Utc::now().timestamp_millis();
    out.push_str(
        "<h3>设备同步</h3><table class=\"devices\"><thead><tr><th>工作站</th><th>设备</th><th>最近联系</th>\
         <th>待上传</th><th>已入库事件</th><th>隔离事件</th><th>平均延迟</th><th>最大延迟</th><th>时钟偏差</th>\
         <th>数据完整至</th></tr></thead><tbody>",
    );
    if health.devices.is_empty() {
        out.push_str("<tr><td colspan=\"10\">尚无设备同步</td></tr>");
    }
    let mut devices: Vec<_> = health.devices.iter().collect();
    devices.sort_by(|a, b| {
        (&a.station_code, &a.device_name, a.origin_id).cmp(&(
            &b.station_code,
            &b.device_name,
            b.origin_id,
        ))
    });
    for device in devices {
        let silent_for = now.saturating_sub(device.last_contact_ms);
        let contact_class = if silent_for > DEVICE_SILENT_MS {
            "warn"
        } else {
            ""
        };
        let backlog_class = if device.backlog > 0 { "warn" } else { "" };
        let _ = write!(
            out,
            "<tr data-origin=\"{origin}\"><td>{station}</td><td>{name}{wipe}</td><td class=\"{contact_class}\">{contact}</td>\
             <td class=\"{backlog_class}\">{backlog}</td><td>{logged}</td><td>{quarantined}</td><td>{mean}</td><td>{max}</td>\
             <td>{skew}</td><td>{through}</td></tr>",
            origin = device.origin_id,
            station = escape(config.station_name(&device.station_code)),
            name = escape(device.device_name.as_deref().unwrap_or("（未登记）")),
            wipe = match device.wipe {
                None => "",
                Some(WipeStatus::Pending) => " <span class=\"warn\">（待擦除）</span>",
                Some(WipeStatus::Wiped) => " <span class=\"warn\">（已擦除）</span>",
            },
            contact = escape(&china_time(
                Some(device.last_contact_ms).filter(|ms| *ms > 0)
            )),
            backlog = device.backlog,
            logged = device.events_logged,
            quarantined = device.quarantined,
            mean = device
                .mean_lag_ms
                .map_or_else(|| "—".to_string(), duration_zh),
            max = device
                .max_lag_ms
                .map_or_else(|| "—".to_string(), duration_zh),
            skew = if device.clock_skew_ms.abs() < 1_000 {
                "0 秒".to_string()
            } else if device.clock_skew_ms < 0 {
                format!("慢 {}", duration_zh(-device.clock_skew_ms))
            } else {
                format!("快 {}", duration_zh(device.clock_skew_ms))
            },
            through = escape(&china_time(device.complete_through_ms)),
        );
    }
    out.push_str("</tbody></table></section></main>");
    out
}

/// A device not heard from for this long is flagged: three days.
const DEVICE_SILENT_MS: i64 = 3 * 86_400_000;

/// A duration in the largest unit that keeps it readable.
fn duration_zh(ms: i64) -> String {
    let ms = ms.max(0);
    let (value, unit) = match ms {
        0..60_000 => return format!("{} 秒", ms / 1_000),
        60_000..3_600_000 => (ms as f64 / 60_000.0, "分钟"),
        3_600_000..86_400_000 => (ms as f64 / 3_600_000.0, "小时"),
        _ => (ms as f64 / 86_400_000.0, "天"),
    };
    format!("{} {unit}", shown(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_in_the_largest_fitting_unit() {
        assert_eq!(duration_zh(-5), "0 秒");
        assert_eq!(duration_zh(59_999), "59 秒");
        assert_eq!(duration_zh(90_000), "1.5 分钟");
        assert_eq!(duration_zh(3 * 3_600_000), "3 小时");
        assert_eq!(duration_zh(36 * 3_600_000), "1.5 天");
    }
}
