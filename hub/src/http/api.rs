//! The JSON endpoints: the answers of `station.v1.Query` as the read API
//! returns them, for the same callers. Stations are asked for with a
//! repeatable `station` parameter; none means every readable station.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use station_proto::ids::Uuid;

use super::{AppState, HttpError};
use crate::auth;
use crate::projections::period::Period;
use crate::projections::{
    CaseTimeline, Caseload, Conflicts, IndicatorTable, OverdueList, QuarantineList, SyncHealth,
};
use crate::server::{MAX_OVERDUE_CASES, QUARANTINE_PAGE};

/// A query string as its pairs, in order, so parameters may repeat.
pub(super) type Pairs = Result<Query<Vec<(String, String)>>, QueryRejection>;

/// The parameters of a request, refusing a malformed query string.
pub(super) struct Params(Vec<(String, String)>);

impl Params {
    pub(super) fn from(query: Pairs) -> Result<Self, HttpError> {
        query
            .map(|Query(pairs)| Params(pairs))
            .map_err(|e| HttpError::BadRequest(format!("query string: {e}")))
    }

    /// Every `station` asked for.
    fn stations(&self) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == "station")
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// The last value of `name`.
    pub(super) fn one(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `period` parsed, with the reason when it is not a period.
pub(super) fn period(text: Option<&str>) -> Result<Period, HttpError> {
    let text = text.ok_or_else(|| {
        HttpError::BadRequest("period: required, e.g. 2026-11, 2026-Q4 or 2026".into())
    })?;
    text.parse()
        .map_err(|e: crate::projections::period::BadPeriod| {
            HttpError::BadRequest(format!("period: {e}; write 2026-11, 2026-Q4 or 2026"))
        })
}

/// `as_of` parsed (today in China when absent).
pub(super) fn as_of(text: Option<&str>) -> Result<chrono::NaiveDate, HttpError> {
    crate::projections::parse_as_of(text.unwrap_or_default())
        .map_err(|e| HttpError::BadRequest(e.into()))
}

/// GET /api/indicators?period=2026-11&station=…
pub(super) async fn indicators(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Pairs,
) -> Result<Json<IndicatorTable>, HttpError> {
    let caller = state.caller(&headers)?;
    let params = Params::from(query)?;
    let period = period(params.one("period"))?;
    let stations = state.stations(&caller, params.stations())?;
    Ok(Json(
        state.read(move |p| p.indicators(period, &stations)).await?,
    ))
}

/// GET /api/caseload?station=…
pub(super) async fn caseload(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Pairs,
) -> Result<Json<Caseload>, HttpError> {
    let caller = state.caller(&headers)?;
    let stations = state.stations(&caller, Params::from(query)?.stations())?;
    Ok(Json(state.read(move |p| p.caseload(&stations)).await?))
}

/// GET /api/overdue?as_of=YYYY-MM-DD&station=…&limit=N
pub(super) async fn overdue(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Pairs,
) -> Result<Json<OverdueList>, HttpError> {
    let caller = state.caller(&headers)?;
    let params = Params::from(query)?;
    let as_of = as_of(params.one("as_of"))?;
    let limit = match params.one("limit") {
        None => MAX_OVERDUE_CASES,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| HttpError::BadRequest("limit: must be a positive number".into()))?
            .min(MAX_OVERDUE_CASES),
    };
    let stations = state.stations(&caller, params.stations())?;
    Ok(Json(
        state
            .read(move |p| p.overdue(as_of, &stations, Some(limit)))
            .await?,
    ))
}

/// GET /api/conflicts?station=…
pub(super) async fn conflicts(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Pairs,
) -> Result<Json<Conflicts>, HttpError> {
    let caller = state.caller(&headers)?;
    let stations = state.stations(&caller, Params::from(query)?.stations())?;
    Ok(Json(state.read(move |p| p.conflicts(&stations)).await?))
}

/// GET /api/sync-health?station=…
pub(super) async fn sync_health(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Pairs,
) -> Result<Json<SyncHealth>, HttpError> {
    let caller = state.caller(&headers)?;
    let stations = state.stations(&caller, Params::from(query)?.stations())?;
    Ok(Json(state.read(move |p| p.sync_health(&stations)).await?))
}

/// GET /api/quarantine?station=…&max=N
pub(super) async fn quarantine(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Pairs,
) -> Result<Json<QuarantineList>, HttpError> {
    let caller = state.caller(&headers)?;
    let params = Params::from(query)?;
    let max = match params.one("max") {
        None => QUARANTINE_PAGE.0,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| HttpError::BadRequest("max: must be a positive number".into()))?
            .min(QUARANTINE_PAGE.1),
    };
    let stations = state.stations(&caller, params.stations())?;
    Ok(Json(
        state.read(move |p| p.quarantine(&stations, max)).await?,
    ))
}

/// GET /api/cases/{id}/timeline
pub(super) async fn case_timeline(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<CaseTimeline>, HttpError> {
    let caller = state.caller(&headers)?;
    let case_id: Uuid = id
        .parse()
        .map_err(|_| HttpError::BadRequest("case id: must be a UUID".into()))?;
    let timeline = state.read(move |p| p.case_timeline(case_id)).await?;
    auth::authorize_case(&caller, case_id, &timeline.station_code)?;
    Ok(Json(timeline))
}
