//! The `station.v1.Query` service: the bureau's read side over the
//! projections.
//!
//! Invariants: every call resolves its stations with
//! [`auth::readable_stations`] (a bureau token reads every station, a device
//! token only its own) and its limits, period and date with
//! [`crate::params`], as the HTTP side does; reads run off the async workers.

use std::sync::Arc;

use station_proto::v1::query_server::{Query, QueryServer};
use station_proto::v1::{
    GetCaseTimelineRequest, GetCaseTimelineResponse, GetCaseloadRequest, GetCaseloadResponse,
    GetConflictsRequest, GetConflictsResponse, GetDuplicatesRequest, GetDuplicatesResponse,
    GetIndicatorsRequest, GetIndicatorsResponse, GetOverdueRequest, GetOverdueResponse,
    GetPendingTransfersRequest, GetPendingTransfersResponse, GetQuarantineRequest,
    GetQuarantineResponse, GetReviewsRequest, GetReviewsResponse, GetSyncHealthRequest,
    GetSyncHealthResponse, PendingTransferRow,
};
use station_proto::validate;
use tonic::codec::CompressionEncoding;
use tonic::{Request, Response, Status};

use super::limits::MAX_MESSAGE_BYTES;
use crate::audit::{Access, Channel};
use crate::auth::{self, Caller};
use crate::params;
use crate::projections::{ProjectionError, Projections};

/// The `Query` service: the bureau's read side. It expects the
/// [`Caller`] that [`crate::auth::Authenticator`] puts on each request: a bureau token
/// reads every station, a device token only its own.
#[derive(Debug, Clone)]
pub struct QueryService {
    /// The projections and their read API.
    projections: Arc<Projections>,
}

impl QueryService {
    /// A service over `projections`.
    pub fn new(projections: Arc<Projections>) -> Self {
        Self { projections }
    }

    /// The tonic server for this service, with compression and limits set.
    pub fn into_server(self) -> QueryServer<Self> {
        QueryServer::new(self)
            .accept_compressed(CompressionEncoding::Zstd)
            .accept_compressed(CompressionEncoding::Gzip)
            .send_compressed(CompressionEncoding::Zstd)
            .send_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    fn stations(&self, caller: &Caller, asked: Vec<String>) -> Result<Vec<String>, Status> {
        Ok(auth::readable_stations(
            caller,
            asked,
            self.projections.config(),
        )?)
    }

    async fn read<T, F>(&self, f: F) -> Result<T, Status>
    where
        T: Send + 'static,
        F: FnOnce(&Projections) -> Result<T, ProjectionError> + Send + 'static,
    {
        let projections = Arc::clone(&self.projections);
        tokio::task::spawn_blocking(move || f(&projections))
            .await
            .map_err(|e| Status::internal(format!("query task failed: {e}")))?
            .map_err(Into::into)
    }
}

#[tonic::async_trait]
impl Query for QueryService {
    async fn get_indicators(
        &self,
        request: Request<GetIndicatorsRequest>,
    ) -> Result<Response<GetIndicatorsResponse>, Status> {
        let caller = auth::caller(&request)?;
        let asked = request.into_inner();
        let period = params::period(&asked.period)?;
        let stations = self.stations(&caller, asked.stations)?;
        let table = self.read(move |p| p.indicators(period, &stations)).await?;
        Ok(Response::new(table.into()))
    }

    async fn get_caseload(
        &self,
        request: Request<GetCaseloadRequest>,
    ) -> Result<Response<GetCaseloadResponse>, Status> {
        let caller = auth::caller(&request)?;
        let stations = self.stations(&caller, request.into_inner().stations)?;
        let caseload = self.read(move |p| p.caseload(&stations)).await?;
        Ok(Response::new(caseload.into()))
    }

    async fn get_overdue(
        &self,
        request: Request<GetOverdueRequest>,
    ) -> Result<Response<GetOverdueResponse>, Status> {
        let caller = auth::caller(&request)?;
        let from = request.remote_addr();
        let asked = request.into_inner();
        let as_of = params::as_of(&asked.as_of)?;
        let limit = params::OVERDUE_CASES.of(asked.limit.into())?;
        let stations = self.stations(&caller, asked.stations)?;
        let list = self
            .read(move |p| {
                let list = p.overdue(as_of, &stations, Some(limit))?;
                p.audit_read(Access {
                    caller,
                    from,
                    via: Channel::Grpc,
                    read: "overdue".into(),
                    params: vec![
                        ("as_of".into(), as_of.to_string()),
                        ("limit".into(), limit.to_string()),
                        ("stations".into(), stations.join(",")),
                    ],
                    cases: list.cases.iter().map(|c| c.case_id).collect(),
                    revealed: false,
                })?;
                Ok(list)
            })
            .await?;
        Ok(Response::new(list.into()))
    }

    async fn get_reviews(
        &self,
        request: Request<GetReviewsRequest>,
    ) -> Result<Response<GetReviewsResponse>, Status> {
        let caller = auth::caller(&request)?;
        let from = request.remote_addr();
        let asked = request.into_inner();
        let as_of = params::as_of(&asked.as_of)?;
        let all = asked.all;
        let stations = self.stations(&caller, asked.stations)?;
        let queue = self
            .read(move |p| {
                let queue = p.reviews(&stations, as_of, all)?;
                p.audit_read(Access {
                    caller,
                    from,
                    via: Channel::Grpc,
                    read: "reviews".into(),
                    params: vec![
                        ("as_of".into(), as_of.to_string()),
                        ("all".into(), all.to_string()),
                        ("stations".into(), stations.join(",")),
                    ],
                    cases: queue.reviews.iter().map(|r| r.case_id).collect(),
                    revealed: false,
                })?;
                Ok(queue)
            })
            .await?;
        Ok(Response::new(queue.into()))
    }

    async fn get_pending_transfers(
        &self,
        request: Request<GetPendingTransfersRequest>,
    ) -> Result<Response<GetPendingTransfersResponse>, Status> {
        let caller = auth::caller(&request)?;
        let from = request.remote_addr();
        let asked = request.into_inner();
        let as_of = params::as_of(&asked.as_of)?;
        let stations = self.stations(&caller, asked.stations)?;
        let pending = self
            .read(move |p| {
                let pending = p.pending_transfers(&stations, as_of)?;
                p.audit_read(Access {
                    caller,
                    from,
                    via: Channel::Grpc,
                    read: "transfers".into(),
                    params: vec![
                        ("as_of".into(), as_of.to_string()),
                        ("stations".into(), stations.join(",")),
                    ],
                    cases: pending.case_ids().collect(),
                    revealed: false,
                })?;
                Ok(pending)
            })
            .await?;
        Ok(Response::new(pending_transfers_answer(pending)))
    }

    async fn get_conflicts(
        &self,
        request: Request<GetConflictsRequest>,
    ) -> Result<Response<GetConflictsResponse>, Status> {
        let caller = auth::caller(&request)?;
        let stations = self.stations(&caller, request.into_inner().stations)?;
        let found = self.read(move |p| p.conflicts(&stations)).await?;
        Ok(Response::new(found.into()))
    }

    async fn get_duplicates(
        &self,
        request: Request<GetDuplicatesRequest>,
    ) -> Result<Response<GetDuplicatesResponse>, Status> {
        let caller = auth::caller(&request)?;
        let from = request.remote_addr();
        let stations = self.stations(&caller, request.into_inner().stations)?;
        let found = self
            .read(move |p| p.read_duplicates(caller, &stations, from, Channel::Grpc))
            .await?;
        Ok(Response::new(found.into()))
    }

    async fn get_sync_health(
        &self,
        request: Request<GetSyncHealthRequest>,
    ) -> Result<Response<GetSyncHealthResponse>, Status> {
        let caller = auth::caller(&request)?;
        let stations = self.stations(&caller, request.into_inner().stations)?;
        let health = self.read(move |p| p.sync_health(&stations)).await?;
        Ok(Response::new(health.into()))
    }

    async fn get_quarantine(
        &self,
        request: Request<GetQuarantineRequest>,
    ) -> Result<Response<GetQuarantineResponse>, Status> {
        let caller = auth::caller(&request)?;
        let asked = request.into_inner();
        let max = params::QUARANTINE_EVENTS.of(asked.max_events.into())?;
        let stations = self.stations(&caller, asked.stations)?;
        let list = self.read(move |p| p.quarantine(&stations, max)).await?;
        Ok(Response::new(list.into()))
    }

    async fn get_case_timeline(
        &self,
        request: Request<GetCaseTimelineRequest>,
    ) -> Result<Response<GetCaseTimelineResponse>, Status> {
        let caller = auth::caller(&request)?;
        let from = request.remote_addr();
        let asked = request.into_inner();
        let case_id = validate::uuid16("case_id", &asked.case_id)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let reveal = asked.reveal;
        let timeline = self
            .read(move |p| p.read_case_timeline(caller, case_id, reveal, from, Channel::Grpc))
            .await?;
        Ok(Response::new(timeline.into()))
    }
}

/// The pending transfers as `GetPendingTransfers` answers them.
fn pending_transfers_answer(
    pending: crate::projections::PendingTransfers,
) -> GetPendingTransfersResponse {
    GetPendingTransfersResponse {
        computed_through_hub_seq: pending.computed_through_hub_seq,
        as_of: pending.as_of.format("%Y-%m-%d").to_string(),
        transfers: pending
            .transfers
            .into_iter()
            .map(|t| PendingTransferRow {
                request_id: t.request_id.as_bytes().to_vec(),
                case_id: t.case_id.as_bytes().to_vec(),
                file_number: t.file_number,
                from_station_code: t.from_station,
                to_station_code: t.to_station,
                requested_on: t
                    .requested_on
                    .map(|d| d.format("%Y-%m-%d").to_string())
                    .unwrap_or_default(),
                age_days: t.age_days,
            })
            .collect(),
    }
}
