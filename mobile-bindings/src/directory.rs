//! The district directory on the phone: the check on open that warns,
//! offline, of a file another station holds for the person, and the
//! opening a worker confirms with a reason.
//!
//! The weaker check, for people with or without an ID number
//! ([`FieldStore::possible_duplicates`]), compares name, birth date and
//! gender by a keyed tag and only warns.
//!
//! Invariants: answers name stations, never a person or an ID number; a
//! confirmed opening records the reason and the stations the directory
//! named in the `CaseOpened` itself, so the hub and the bureau see them;
//! the same-station refusal ([`FieldError::PersonHasOpenFile`]) is not
//! lifted by a reason.

use station_proto::Body;

use crate::entries::CaseOpening;
use crate::error::FieldError;
use crate::store::{FieldStore, Recorded};

/// What the phone holds of the district directory.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct DirectoryState {
    /// The hub gave this phone the directory's key: openings are checked.
    pub checked: bool,
    /// Person and station pairs held (open files of the district).
    pub lines: u64,
    /// Bytes the directory takes in the store.
    pub bytes: u64,
}

#[uniffi::export]
impl FieldStore {
    /// The names of the other stations that, by the district directory the
    /// phone last pulled, hold an open file for the person of `id_number`:
    /// the check to run before [`FieldStore::open_case`], offline. Empty
    /// when none does, or before the first sync gave the directory.
    ///
    /// # Errors
    /// [`FieldError::InvalidInput`] for an ID number that is not valid;
    /// [`FieldError::Storage`].
    pub fn held_elsewhere(&self, id_number: String) -> Result<Vec<String>, FieldError> {
        let id_number = station_proto::validate::id_number(
            "case_opened.id_number",
            &id_number,
            &station_proto::validate::Context::from_local_clock(),
        )?;
        let agent = self.agent()?;
        Ok(agent
            .held_elsewhere(&id_number)?
            .into_iter()
            .map(|h| h.station_name)
            .collect())
    }

    /// 一人一档 across the district: opens a case file although the district
    /// directory says another station holds the person's open file, because
    /// of `reason` (recorded with the opening, with the stations named).
    ///
    /// # Errors
    /// As [`FieldStore::open_case`]; [`FieldError::InvalidInput`] for an
    /// empty or too long reason.
    pub fn open_case_despite_duplicate(
        &self,
        entry: CaseOpening,
        reason: String,
    ) -> Result<Recorded, FieldError> {
        if reason.trim().is_empty() {
            return Err(FieldError::invalid(
                "case_opened.duplicate_reason",
                "is required to open a file another station holds",
            ));
        }
        let entry_id = entry.entry_id.clone();
        let mut body = entry.into_body();
        if let Body::CaseOpened(m) = &mut body {
            m.duplicate_reason = reason;
        }
        self.record(entry_id, body)
    }

    /// The names of the stations, this phone's own among them, that hold
    /// an open file for a person of the opening's name (as
    /// `station_proto::person::normalise_name` compares it: width, spaces,
    /// case, middle dots and Tibetan tsheg aside), birth date and gender,
    /// with or without an ID number on either side: a *possible*
    /// duplicate, to show before [`FieldStore::open_case`], offline. It
    /// never refuses the opening and needs no reason; an ID number's match
    /// keeps its own rules ([`FieldStore::held_elsewhere`], the same-station
    /// refusal). Empty when none matches. Names stations only, never a
    /// person.
    ///
    /// # Errors
    /// [`FieldError::Storage`].
    pub fn possible_duplicates(&self, entry: CaseOpening) -> Result<Vec<String>, FieldError> {
        let agent = self.agent()?;
        let Body::CaseOpened(opened) = entry.into_body() else {
            return Ok(Vec::new());
        };
        Ok(agent
            .possible_duplicates(&opened)?
            .into_iter()
            .map(|h| h.station_name)
            .collect())
    }

    /// What the phone holds of the district directory.
    ///
    /// # Errors
    /// [`FieldError::Storage`].
    pub fn directory_state(&self) -> Result<DirectoryState, FieldError> {
        let agent = self.agent()?;
        let status = agent
            .log()
            .directory_status()
            .map_err(station_agent::AgentError::from)?;
        Ok(DirectoryState {
            checked: status.has_key,
            lines: status.lines as u64,
            bytes: status.bytes as u64,
        })
    }
}
