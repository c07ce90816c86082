//! [`AgentRegistry`] for [`SqliteStore`]: the agents live in the `agents` table of the same file
//! as the task board.

use ananta_core::agent::{AgentCard, AgentInfo, AgentStatus};
use ananta_core::error::{RegistryError, StoreError};
use ananta_core::ids::AgentId;
use ananta_core::registry::{AgentMatch, AgentRegistry, rank_agents};
use async_trait::async_trait;
use chrono::Utc;
use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;

use super::schema::agents;
use super::{SqliteStore, from_json, map_db, to_json};
use crate::sql::{i64_of, micros, registry_error};

/// Reads one agent; `None` when there is none of that name.
fn load_agent(conn: &mut SqliteConnection, id: &AgentId) -> Result<Option<AgentInfo>, StoreError> {
    let data: Option<String> = agents::table
        .find(id.as_str())
        .select(agents::data)
        .get_result(conn)
        .optional()
        .map_err(map_db)?;
    data.map(|d| from_json("agent", &d)).transpose()
}

/// Writes an agent's row from the agent: the JSON and every copied column.
fn save_agent(
    conn: &mut SqliteConnection,
    info: &AgentInfo,
    insert: bool,
) -> Result<(), StoreError> {
    let name = info.card.name.as_str();
    let values = (
        agents::status.eq(info.status.as_str()),
        agents::last_seen.eq(micros(info.last_seen)),
        agents::registered_at.eq(micros(info.registered_at)),
        agents::card_version.eq(i64_of(info.card_version)?),
        agents::data.eq(to_json(info)?),
    );
    if insert {
        diesel::insert_into(agents::table)
            .values((agents::name.eq(name), values))
            .execute(conn)
            .map_err(map_db)?;
    } else {
        diesel::update(agents::table.find(name))
            .set(values)
            .execute(conn)
            .map_err(map_db)?;
    }
    Ok(())
}

impl SqliteStore {
    /// Applies `change` to the agent `id` and saves it, in one write (the writer runs it in a
    /// transaction, so no other change of the agent comes between the read and the write).
    async fn change_agent(
        &self,
        id: AgentId,
        change: impl FnOnce(&mut AgentInfo) + Send + 'static,
    ) -> Result<AgentInfo, RegistryError> {
        let name = id.clone();
        self.write(move |conn| {
            let Some(mut info) = load_agent(conn, &name)? else {
                return Ok(None);
            };
            change(&mut info);
            save_agent(conn, &info, false)?;
            Ok(Some(info))
        })
        .await
        .map_err(registry_error)?
        .ok_or(RegistryError::NotFound(id))
    }
}

/// The registry shares the store's file, writer thread and readers: registrations are
/// durable like tasks, and each change of an agent is atomic. Agents are listed by name;
/// [`best_match`](AgentRegistry::best_match) ranks them with [`rank_agents`], like every
/// registry.
#[async_trait]
impl AgentRegistry for SqliteStore {
    async fn register(&self, card: AgentCard) -> Result<AgentInfo, RegistryError> {
        card.validate()?;
        self.write(move |conn| {
            let existing = load_agent(conn, &card.name)?;
            let info = AgentInfo::registered(existing.as_ref(), card, Utc::now());
            save_agent(conn, &info, existing.is_none())?;
            Ok(info)
        })
        .await
        .map_err(registry_error)
    }

    async fn deregister(&self, id: AgentId) -> Result<(), RegistryError> {
        let name = id.to_string();
        let removed = self
            .write(move |conn| {
                diesel::delete(agents::table.find(name))
                    .execute(conn)
                    .map_err(map_db)
            })
            .await
            .map_err(registry_error)?;
        if removed == 0 {
            return Err(RegistryError::NotFound(id));
        }
        Ok(())
    }

    async fn get(&self, id: AgentId) -> Result<AgentInfo, RegistryError> {
        let name = id.clone();
        self.read(move |conn| load_agent(conn, &name))
            .await
            .map_err(registry_error)?
            .ok_or(RegistryError::NotFound(id))
    }

    async fn list(&self) -> Result<Vec<AgentInfo>, RegistryError> {
        self.read(|conn| {
            let rows: Vec<String> = agents::table
                .order(agents::name.asc())
                .select(agents::data)
                .load(conn)
                .map_err(map_db)?;
            rows.iter().map(|r| from_json("agent", r)).collect()
        })
        .await
        .map_err(registry_error)
    }

    async fn heartbeat(&self, id: AgentId) -> Result<AgentInfo, RegistryError> {
        let now = Utc::now();
        self.change_agent(id, move |info| {
            info.last_seen = now;
            info.status = AgentStatus::Online;
        })
        .await
    }

    async fn set_status(
        &self,
        id: AgentId,
        status: AgentStatus,
    ) -> Result<AgentInfo, RegistryError> {
        self.change_agent(id, move |info| info.status = status)
            .await
    }

    async fn best_match(&self, text: String, k: usize) -> Result<Vec<AgentMatch>, RegistryError> {
        let agents = self.list().await?;
        rank_agents(&agents, &text, k)
    }
}
