//! The JSON endpoints: the answers of `station.v1.Query` as the read API
//! returns them, for the same callers. Stations are asked for with a
//! repeatable `station` parameter; none means every readable station.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use station_proto::ids::Uuid;

use super::{AppState, HttpError, Peer, peer_addr};
use crate::audit::{self, Access, Channel};
use crate::projections::{
    CaseTimeline, Caseload, Conflicts, DuplicateFiles, IndicatorTable, OverdueList, QuarantineList,
    ReviewQueue, SyncHealth, Trends, today_in_china,
};
use crate::{auth, params};

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

    /// Every parameter, as asked, for the read audit.
    pub(super) fn pairs(&self) -> Vec<(String, String)> {
        self.0.clone()
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

/// GET /api/indicators?period=2026-11&station=…
pub(super) async fn indicators(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Pairs,
) -> Result<Json<IndicatorTable>, HttpError> {
    let caller = state.caller(&headers)?;
    let asked = Params::from(query)?;
    let period = params::period(asked.one("period").unwrap_or_default())?;
    let stations = state.stations(&caller, asked.stations())?;
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

/// GET /api/overdue?as_of=YYYY-MM-DD&station=…&limit=N (audited: it names
/// persons)
pub(super) async fn overdue(
    State(state): State<AppState>,
    headers: HeaderMap,
    peer: Peer,
    query: Pairs,
) -> Result<Json<OverdueList>, HttpError> {
    let caller = state.caller(&headers)?;
    let asked = Params::from(query)?;
    let as_of = params::as_of(asked.one("as_of").unwrap_or_default())?;
    let limit = params::OVERDUE_CASES.parse("limit", asked.one("limit"))?;
    let stations = state.stations(&caller, asked.stations())?;
    let from = peer_addr(peer);
    Ok(Json(
        state
            .read(move |p| {
                let list = p.overdue(as_of, &stations, Some(limit))?;
                p.audit_read(Access {
                    caller,
                    from,
                    via: Channel::Json,
                    read: "overdue".into(),
                    params: asked.pairs(),
                    cases: list.cases.iter().map(|c| c.case_id).collect(),
                    revealed: false,
                })?;
                Ok(list)
            })
            .await?,
    ))
}

/// GET /api/reviews?station=…&as_of=YYYY-MM-DD&all=true: the review
/// queue (waiting and returned requests, or every one with `all`), with ages;
/// audited, as it names cases.
pub(super) async fn reviews(
    State(state): State<AppState>,
    headers: HeaderMap,
    peer: Peer,
    query: Pairs,
) -> Result<Json<ReviewQueue>, HttpError> {
    let caller = state.caller(&headers)?;
    let asked = Params::from(query)?;
    let as_of = params::as_of(asked.one("as_of").unwrap_or_default())?;
    let all = params::flag("all", asked.one("all"))?;
    let stations = state.stations(&caller, asked.stations())?;
    let from = peer_addr(peer);
    Ok(Json(
        state
            .read(move |p| {
                let queue = p.reviews(&stations, as_of, all)?;
                p.audit_read(Access {
                    caller,
                    from,
                    via: Channel::Json,
                    read: "reviews".into(),
                    params: asked.pairs(),
                    cases: queue.reviews.iter().map(|r| r.case_id).collect(),
                    revealed: false,
                })?;
                Ok(queue)
            })
            .await?,
    ))
}

/// GET /api/transfers?station=…&as_of=YYYY-MM-DD: the transfer requests
/// not answered yet from or to the stations, with their age, by file number
/// and stations only; audited, as it names cases.
pub(super) async fn transfers(
    State(state): State<AppState>,
    headers: HeaderMap,
    peer: Peer,
    query: Pairs,
) -> Result<Json<crate::projections::PendingTransfers>, HttpError> {
    let caller = state.caller(&headers)?;
    let asked = Params::from(query)?;
    let as_of = params::as_of(asked.one("as_of").unwrap_or_default())?;
    let stations = state.stations(&caller, asked.stations())?;
    let from = peer_addr(peer);
    Ok(Json(
        state
            .read(move |p| {
                let pending = p.pending_transfers(&stations, as_of)?;
                p.audit_read(Access {
                    caller,
                    from,
                    via: Channel::Json,
                    read: "transfers".into(),
                    params: asked.pairs(),
                    cases: pending.case_ids().collect(),
                    revealed: false,
                })?;
                Ok(pending)
            })
            .await?,
    ))
}

/// GET /api/trends?station=…&through=YYYY-MM: the twelve months ending
/// with `through` (default: this month) of each indicator against its
/// target, overdue follow-ups and open cases, per station and for the
/// stations together.
pub(super) async fn trends(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Pairs,
) -> Result<Json<Trends>, HttpError> {
    let caller = state.caller(&headers)?;
    let asked = Params::from(query)?;
    let today = today_in_china();
    let through = match asked.one("through").filter(|t| !t.is_empty()) {
        Some(text) => params::month(text)?.first_day(),
        None => today,
    };
    let stations = state.stations(&caller, asked.stations())?;
    Ok(Json(
        state
            .read(move |p| p.trends(&stations, through, today))
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

/// GET /api/duplicates?station=…: duplicate files, never an ID number
/// (audited: it says which files are one person's).
pub(super) async fn duplicates(
    State(state): State<AppState>,
    headers: HeaderMap,
    peer: Peer,
    query: Pairs,
) -> Result<Json<DuplicateFiles>, HttpError> {
    let caller = state.caller(&headers)?;
    let stations = state.stations(&caller, Params::from(query)?.stations())?;
    let from = peer_addr(peer);
    Ok(Json(
        state
            .read(move |p| p.read_duplicates(caller, &stations, from, Channel::Json))
            .await?,
    ))
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
    let asked = Params::from(query)?;
    let max = params::QUARANTINE_EVENTS.parse("max", asked.one("max"))?;
    let stations = state.stations(&caller, asked.stations())?;
    Ok(Json(
        state.read(move |p| p.quarantine(&stations, max)).await?,
    ))
}

/// GET /api/cases/{id}/timeline?reveal=true (audited): ID numbers, phones
/// and addresses masked unless `reveal=true`.
pub(super) async fn case_timeline(
    State(state): State<AppState>,
    headers: HeaderMap,
    peer: Peer,
    Path(id): Path<String>,
    query: Pairs,
) -> Result<Json<CaseTimeline>, HttpError> {
    let caller = state.caller(&headers)?;
    let case_id: Uuid = id
        .parse()
        .map_err(|_| HttpError::BadRequest("case id: must be a UUID".into()))?;
    let reveal = params::reveal(Params::from(query)?.one("reveal"))?;
    let from = peer_addr(peer);
    let timeline = state
        .read(move |p| p.read_case_timeline(caller, case_id, reveal, from, Channel::Json))
        .await?;
    Ok(Json(timeline))
}

/// GET /api/audit?case=ID&since=YYYY-MM-DD&limit=N: the read audit, bureau
/// only: the newest `limit` records the filters admit (1,000 by default,
/// at most 10,000), oldest first, how many they admit in all (`admitted`),
/// and where the chain breaks (`broken`, null when every link holds).
pub(super) async fn audit(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Pairs,
) -> Result<Json<audit::Reading>, HttpError> {
    let caller = state.caller(&headers)?;
    auth::authorize_district(&caller)?;
    let asked = Params::from(query)?;
    let case = match asked.one("case").filter(|c| !c.is_empty()) {
        Some(text) => Some(
            text.parse::<Uuid>()
                .map_err(|_| HttpError::BadRequest("case: must be a UUID".into()))?,
        ),
        None => None,
    };
    let since = match asked.one("since").filter(|d| !d.is_empty()) {
        Some(text) => Some(params::since(text)?),
        None => None,
    };
    let limit = Some(params::AUDIT_RECORDS.parse("limit", asked.one("limit"))?);
    let data = state.projections.store().dir().to_path_buf();
    let filter = audit::Filter { case, since, limit };
    let reading = tokio::task::spawn_blocking(move || audit::read(&data, &filter))
        .await
        .map_err(|e| HttpError::Internal(format!("read task failed: {e}")))?
        .map_err(|e| HttpError::Internal(e.to_string()))?;
    Ok(Json(reading))
}
