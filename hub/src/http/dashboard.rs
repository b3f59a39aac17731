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
    DuplicateFiles, IndicatorTable, OverdueList, ReviewQueue, StationTrend, SyncHealth, Trends,
    WipeStatus, end_of_day_ms, today_in_china,
};
use crate::{auth, guard, params};

const STYLE: &str = "body{font-family:'Noto Sans CJK SC','Microsoft YaHei','Noto Sans Tibetan','Microsoft Himalaya',sans-serif;margin:0;background:#f5f6f8;color:#222}\
header{background:#9b1c1c;color:#fff;padding:12px 24px;display:flex;flex-wrap:wrap;gap:8px;justify-content:space-between;align-items:center}\
header a,header button{color:#fff}main{padding:16px 24px}section{background:#fff;border-radius:6px;padding:12px 16px;margin-bottom:16px;overflow-wrap:anywhere}\
.stations{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(100%,360px),1fr));gap:12px}\
.station{border:1px solid #ddd;border-radius:6px;padding:8px;min-width:0}.bo{color:#555;margin-left:8px}\
.scroll{overflow-x:auto;max-width:100%;margin-bottom:12px}\
table{border-collapse:collapse;width:100%}th,td{border:1px solid #ddd;padding:4px 8px;text-align:left;overflow-wrap:normal}th{background:#f0f0f0}\
input{max-width:100%}svg{max-width:100%;height:auto}\
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(100%,280px),1fr));gap:12px}\
.chart{border:1px solid #eee;border-radius:6px;padding:6px}.chart h3{font-size:14px;margin:0 0 4px}\
.warn{color:#b45309}.ok{color:#047857}.muted{color:#6b7280}form.inline{display:inline}table.counts{margin-bottom:0}\
@media (max-width:600px){header{padding:8px 12px}main{padding:8px}section{padding:8px 10px}th,td{padding:3px 6px;font-size:14px}}";

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
    let trend_of = match one("trend") {
        Some(code) if stations.iter().any(|s| s == code) => Some(code.to_string()),
        Some(code) => {
            return Err(HttpError::BadRequest(format!(
                "trend: {code} is not a station of the roster"
            )));
        }
        None => None,
    };
    let one_station = trend_of.is_some();
    let from = peer_addr(peer);
    let (table, overdue, health, duplicates, reviews, trends, transfers) = state
        .read(move |p| {
            let overdue = p.overdue(as_of, &stations, Some(OVERDUE_SHOWN))?;
            let duplicates = p.duplicates(&stations)?;
            let reviews = p.reviews(&stations, today, false)?;
            let transfers = p.pending_transfers(&stations, today)?;
            // The page names the overdue cases' persons, which files are
            // one person's, and the cases waiting for review.
            let mut cases: Vec<_> = overdue.cases.iter().map(|c| c.case_id).collect();
            cases.extend(duplicates.case_ids());
            cases.extend(reviews.reviews.iter().map(|r| r.case_id));
            cases.extend(transfers.case_ids());
            p.audit_read(Access {
                caller,
                from,
                via: Channel::Dashboard,
                read: "dashboard".into(),
                params: pairs,
                cases,
                revealed: false,
            })?;
            Ok((
                p.indicators(period, &stations)?,
                overdue,
                p.sync_health(&stations)?,
                duplicates,
                reviews,
                p.trends(
                    trend_of
                        .as_ref()
                        .map_or(&stations[..], std::slice::from_ref),
                    table_through(period, today),
                    today,
                )?,
                transfers,
            ))
        })
        .await?;
    let body = render(&state, &table, &overdue, &health, &duplicates, &reviews);
    let body = body.replacen(
        TRENDS_PLACE,
        &(render_transfers(&state, &transfers) + &render_trends(&trends, one_station, &state)),
        1,
    );
    Ok(Html(document("社会工作站数据看板", &body)).into_response())
}

/// The review queue: per station how many requests wait and the oldest's
/// age, then each waiting or returned request, oldest first; by file
/// number, never a name.
fn render_reviews(out: &mut String, state: &AppState, reviews: &ReviewQueue) {
    let config = state.projections.config();
    let _ = write!(
        out,
        "<section class=\"reviews\"><h2>督导审核（截至 {as_of}）</h2>\
         <p>待审核 {pending} 项{stale}</p><div class=\"scroll\"><table class=\"reviews\"><thead><tr><th>工作站</th><th>档案编号</th>\
         <th>事项</th><th>提请人</th><th>提请日期</th><th>等待天数</th><th>状态</th><th>意见</th></tr></thead><tbody>",
        as_of = reviews.as_of,
        pending = reviews.pending,
        stale = if reviews.stale > 0 {
            format!(
                "；<span class=\"warn\">{} 项决定时个案已有变动</span>",
                reviews.stale
            )
        } else {
            String::new()
        },
    );
    if reviews.reviews.is_empty() {
        out.push_str("<tr><td colspan=\"8\">无待审核事项</td></tr>");
    }
    for row in &reviews.reviews {
        let subject = station_proto::names::parse::<station_proto::v1::ReviewSubject>(&row.subject)
            .map_or("未定", |s| station_proto::review::subject_label(s.into()));
        let state_label = if row.stale {
            format!("{}（个案已变动）", row.state.label())
        } else {
            row.state.label().to_string()
        };
        let _ = write!(
            out,
            "<tr data-station=\"{code}\" data-state=\"{state}\"><td>{station}</td><td>{file}</td><td>{subject}</td><td>{by}</td>\
             <td>{on}</td><td>{age}</td><td>{state_label}</td><td>{comment}</td></tr>",
            code = escape(&row.station_code),
            state = row.state.name(),
            station = escape(config.station_name(&row.station_code)),
            file = escape(&row.file_number),
            by = escape(&row.requested_by),
            on = row.requested_on.map(|d| d.to_string()).unwrap_or_default(),
            age = row.age_days,
            state_label = escape(&state_label),
            comment = escape(&row.comment),
        );
    }
    out.push_str("</tbody></table></div></section>");
}

/// The transfer requests waiting for an answer, oldest first, with their
/// age; by file number and stations, never a name.
fn render_transfers(state: &AppState, pending: &crate::projections::PendingTransfers) -> String {
    let config = state.projections.config();
    let mut out = String::new();
    let _ = write!(
        out,
        "<section class=\"transfers\"><h2>待接收转移（截至 {as_of}）</h2><p>待答复 {n} 项</p>\
         <div class=\"scroll\"><table class=\"transfers\"><thead><tr><th>档案编号</th><th>转出工作站</th>\
         <th>转入工作站</th><th>申请日期</th><th>等待天数</th></tr></thead><tbody>",
        as_of = pending.as_of,
        n = pending.transfers.len(),
    );
    if pending.transfers.is_empty() {
        out.push_str("<tr><td colspan=\"5\">无待接收转移</td></tr>");
    }
    for t in &pending.transfers {
        let _ = write!(
            out,
            "<tr data-from=\"{from_code}\" data-to=\"{to_code}\"><td>{file}</td><td>{from}</td><td>{to}</td>\
             <td>{on}</td><td>{age}</td></tr>",
            from_code = escape(&t.from_station),
            to_code = escape(&t.to_station),
            file = escape(&t.file_number),
            from = escape(config.station_name(&t.from_station)),
            to = escape(config.station_name(&t.to_station)),
            on = t.requested_on.map(|d| d.to_string()).unwrap_or_default(),
            age = t.age_days,
        );
    }
    out.push_str("</tbody></table></div></section>");
    out
}

/// Where the trends go in the rendered page.
const TRENDS_PLACE: &str = "<!--trends-->";

/// The last month the trends cover: the period's last month, or this month
/// when the period runs on.
fn table_through(period: Period, today: chrono::NaiveDate) -> chrono::NaiveDate {
    period.last_day().min(today)
}

/// One small bar chart of twelve months, with the target as a dashed line.
fn chart(
    out: &mut String,
    title: &str,
    months: &[String],
    values: &[f64],
    target: Option<i64>,
    key: &str,
) {
    const W: f64 = 300.0;
    const H: f64 = 110.0;
    const BASE: f64 = 90.0;
    let top = values
        .iter()
        .copied()
        .fold(target.map_or(0.0, |t| t as f64), f64::max)
        .max(1.0);
    let step = W / months.len().max(1) as f64;
    let _ = write!(
        out,
        "<div class=\"chart\" data-trend=\"{key}\"><h3>{title}</h3>\
         <svg role=\"img\" aria-label=\"{title}\" width=\"100%\" viewBox=\"0 0 {W} {H}\" xmlns=\"http://www.w3.org/2000/svg\">",
        key = escape(key),
        title = escape(title),
    );
    for (i, (month, value)) in months.iter().zip(values).enumerate() {
        let height = (value / top * (BASE - 10.0)).max(0.0);
        let x = i as f64 * step + 2.0;
        let _ = write!(
            out,
            "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{height:.1}\" fill=\"#2563eb\" data-month=\"{m}\" data-value=\"{v}\"><title>{m}: {v}</title></rect>",
            y = BASE - height,
            w = step - 4.0,
            m = escape(month),
            v = shown(*value),
        );
        if i % 3 == 0 || i + 1 == months.len() {
            let _ = write!(
                out,
                "<text x=\"{x:.1}\" y=\"104\" font-size=\"9\">{}</text>",
                escape(month.get(2..).unwrap_or(month))
            );
        }
    }
    if let Some(target) = target {
        let y = BASE - target as f64 / top * (BASE - 10.0);
        let _ = write!(
            out,
            "<line x1=\"0\" x2=\"{W}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#b91c1c\" stroke-dasharray=\"4 3\"/>\
             <text x=\"{W}\" y=\"{ty:.1}\" font-size=\"9\" text-anchor=\"end\" fill=\"#b91c1c\">目标 {target}</text>",
            ty = (y - 2.0).max(9.0),
        );
    }
    out.push_str("</svg></div>");
}

/// The trends section: twelve months of each indicator against its monthly
/// target, of overdue follow-ups and of open cases, for the district (or
/// one station), with links to each station's.
fn render_trends(trends: &Trends, one_station: bool, state: &AppState) -> String {
    let config = state.projections.config();
    let shown: &StationTrend = if one_station {
        match trends.stations.first() {
            Some(station) => station,
            None => &trends.district,
        }
    } else {
        &trends.district
    };
    let mut out = String::new();
    let _ = write!(
        out,
        "<section class=\"trends\"><h2>近12个月趋势 · {}</h2><p>",
        escape(&shown.station_name)
    );
    out.push_str("<a href=\"/\">全区</a>");
    for code in config.station_codes() {
        let _ = write!(
            out,
            " · <a href=\"/?trend={code}\">{}</a>",
            escape(config.station_name(&code)),
            code = escape(&code)
        );
    }
    out.push_str("</p><div class=\"charts\">");
    for metric in &shown.metrics {
        chart(
            &mut out,
            metric.label,
            &trends.months,
            &metric.values,
            metric.target,
            metric.metric.name(),
        );
    }
    let overdue: Vec<f64> = shown.overdue.iter().map(|&n| n as f64).collect();
    chart(
        &mut out,
        "逾期未访（月末）",
        &trends.months,
        &overdue,
        None,
        "overdue",
    );
    let open: Vec<f64> = shown.open_cases.iter().map(|&n| n as f64).collect();
    chart(
        &mut out,
        "在册个案（月末）",
        &trends.months,
        &open,
        None,
        "open_cases",
    );
    out.push_str("</div></section>");
    out
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
    reviews: &ReviewQueue,
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
    let running = end_of_day_ms(table.last_day) > health.hub_clock_ms;
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
        "<section><h2>逾期未访（截至 {as_of}）</h2><div class=\"scroll\"><table class=\"counts\"><thead><tr><th>工作站</th><th>逾期个案</th>\
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
    out.push_str("</tbody></table></div>");
    if overdue.total > overdue.cases.len() as u64 {
        let _ = write!(
            out,
            "<p class=\"muted\">共 {} 例逾期，下表列出逾期最久的 {} 例；完整名单见各站的 CSV 或 Excel。</p>",
            overdue.total,
            overdue.cases.len()
        );
    }
    out.push_str(
        "<div class=\"scroll\"><table><thead><tr><th>工作站</th><th>档案编号</th><th>姓名</th><th>社区</th><th>级别</th><th>应访日期</th>\
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
    out.push_str("</tbody></table></div></section>");

    render_reviews(&mut out, state, reviews);
    out.push_str(TRENDS_PLACE);

    out.push_str(
        "<section><h2>数据完整性与同步状况</h2><div class=\"scroll\"><table><thead><tr><th>工作站</th><th>设备数</th><th>数据完整至</th>\
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
    out.push_str("</tbody></table></div>");

    // Files opened twice for one person at one station (two offline
    // phones), and possible duplicates across stations (the district
    // directory's person open at two stations): by case id, never the
    // person.
    if !duplicates.files.is_empty() {
        out.push_str(
            "<h3>重复建档</h3><div class=\"scroll\"><table class=\"duplicates\"><thead><tr><th>工作站</th><th>社区</th>\
             <th>重复档案</th><th>档案编号</th><th>建档日期</th><th>原档案工作站</th><th>原档案</th><th>原档案编号</th><th>原建档日期</th><th>处理</th></tr></thead><tbody>",
        );
        for file in &duplicates.files {
            let across = file.duplicate_of_station_code != file.station_code;
            let _ = write!(
                out,
                "<tr data-station=\"{}\" data-resolution=\"{}\" data-across=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&file.station_code),
                match file.resolution {
                    crate::projections::DuplicateResolution::Open => "open",
                    crate::projections::DuplicateResolution::Merged => "merged",
                    crate::projections::DuplicateResolution::Dismissed => "dismissed",
                },
                across,
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
                if across {
                    format!(
                        "{}（跨站，疑似重复）",
                        escape(config.station_name(&file.duplicate_of_station_code))
                    )
                } else {
                    "本站".to_string()
                },
                file.duplicate_of,
                escape(&file.duplicate_of_file_number),
                file.duplicate_of_opened_on,
                file.resolution.label(),
            );
        }
        out.push_str("</tbody></table></div>");
    }

    // Each device: whether it still holds entries the hub lacks, and since
    // when it has not been heard from, by the hub's clock.
    let now = health.hub_clock_ms;
    out.push_str(
        "<h3>设备同步</h3><div class=\"scroll\"><table class=\"devices\"><thead><tr><th>工作站</th><th>设备</th><th>最近联系</th>\
         <th>待上传</th><th>已入库事件</th><th>隔离事件</th><th>平均延迟</th><th>最大延迟</th><th>时钟偏差</th>\
         <th>数据完整至</th><th>上传途径</th></tr></thead><tbody>",
    );
    if health.devices.is_empty() {
        out.push_str("<tr><td colspan=\"11\">尚无设备同步</td></tr>");
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
             <td>{skew}</td><td>{through}</td><td>{path}</td></tr>",
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
            path = match &device.via_relay {
                Some(relay) => format!("经工作站中继 {}", escape(relay)),
                None => "直连".to_string(),
            },
        );
    }
    out.push_str("</tbody></table></div></section></main>");
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
