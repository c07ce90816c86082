//! [`AgentRegistry`] for [`PostgresStore`]: the agents live in the `agents` table of the same
//! database as the task board, so every hub sharing the board sees the same agents.

use ananta_core::agent::{AgentCard, AgentInfo, AgentStatus};
use ananta_core::error::{RegistryError, StoreError};
use ananta_core::ids::AgentId;
use ananta_core::registry::{AgentMatch, AgentRegistry, rank_agents};
use async_trait::async_trait;
use chrono::Utc;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use futures::FutureExt;

use super::schema::agents;
use super::{PostgresStore, TxError, from_json, map_db, to_json};
use crate::sql::{i64_of, micros, registry_error};

/// How often `register` looks again when the agent's row appeared or vanished between its
/// read and its write (another hub registering or deregistering the same name at that moment).
const REGISTER_ATTEMPTS: usize = 3;

/// Locks an agent's row for the rest of the transaction and reads it; `None` when there is no
/// agent of that name.
async fn lock_agent(
    conn: &mut AsyncPgConnection,
    id: &AgentId,
) -> Result<Option<AgentInfo>, TxError> {
    let data: Option<serde_json::Value> = agents::table
        .find(id.as_str())
        .select(agents::data)
        .for_update()
        .first(conn)
        .await
        .optional()?;
    Ok(data.map(|d| from_json("agent", d)).transpose()?)
}

/// Writes a new agent's row unless one of that name exists (or is being inserted by another
/// transaction, which this waits for); whether the row was written.
async fn insert_agent(conn: &mut AsyncPgConnection, info: &AgentInfo) -> Result<bool, TxError> {
    let n = diesel::insert_into(agents::table)
        .values((
            agents::name.eq(info.card.name.as_str()),
            agents::status.eq(info.status.as_str()),
            agents::last_seen.eq(micros(info.last_seen)),
            agents::registered_at.eq(micros(info.registered_at)),
            agents::card_version.eq(i64_of(info.card_version)?),
            agents::data.eq(to_json(info)?),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok(n == 1)
}

/// Writes an existing agent's row from the agent: the JSON and every copied column.
async fn update_agent(conn: &mut AsyncPgConnection, info: &AgentInfo) -> Result<(), TxError> {
    diesel::update(agents::table.find(info.card.name.as_str()))
        .set((
            agents::status.eq(info.status.as_str()),
            agents::last_seen.eq(micros(info.last_seen)),
            agents::registered_at.eq(micros(info.registered_at)),
            agents::card_version.eq(i64_of(info.card_version)?),
            agents::data.eq(to_json(info)?),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

impl PostgresStore {
    /// Applies `change` to the agent `id` and saves it, in one transaction holding the agent's
    /// row lock, so concurrent changes of one agent (from any hub) are serialized.
    async fn change_agent(
        &self,
        id: AgentId,
        change: impl FnOnce(&mut AgentInfo) + Send + 'static,
    ) -> Result<AgentInfo, RegistryError> {
        let name = id.clone();
        self.tx(move |c| {
            async move {
                let Some(mut info) = lock_agent(c, &name).await? else {
                    return Ok(None);
                };
                change(&mut info);
                update_agent(c, &info).await?;
                Ok(Some(info))
            }
            .boxed()
        })
        .await
        .map_err(registry_error)?
        .ok_or(RegistryError::NotFound(id))
    }
}

/// The registry shares the store's database and pool: every hub on the board sees the same
/// agents, and each change of an agent is one transaction that holds the agent's row lock
/// (`SELECT … FOR UPDATE`), so changes from several hubs never overwrite each other. Agents
/// are listed by name; [`best_match`](AgentRegistry::best_match) ranks them with
/// [`rank_agents`], like every registry.
#[async_trait]
impl AgentRegistry for PostgresStore {
    async fn register(&self, card: AgentCard) -> Result<AgentInfo, RegistryError> {
        card.validate()?;
        self.tx(move |c| {
            async move {
                let now = Utc::now();
                for _ in 0..REGISTER_ATTEMPTS {
                    let existing = lock_agent(c, &card.name).await?;
                    let info = AgentInfo::registered(existing.as_ref(), card.clone(), now);
                    if existing.is_some() {
                        update_agent(c, &info).await?;
                        return Ok(info);
                    }
                    if insert_agent(c, &info).await? {
                        return Ok(info);
                    }
                    // Another hub registered the name first; its row is committed, and the
                    // next statement sees it: register over it.
                }
                Err(StoreError::Unavailable(format!(
                    "agent {} changed {REGISTER_ATTEMPTS} times during its registration",
                    card.name
                ))
                .into())
            }
            .boxed()
        })
        .await
        .map_err(registry_error)
    }

    async fn deregister(&self, id: AgentId) -> Result<(), RegistryError> {
        let name = id.to_string();
        let removed = self
            .run(move |c| {
                async move {
                    diesel::delete(agents::table.find(name))
                        .execute(c)
                        .await
                        .map_err(map_db)
                }
                .boxed()
            })
            .await
            .map_err(registry_error)?;
        if removed == 0 {
            return Err(RegistryError::NotFound(id));
        }
        Ok(())
    }

    async fn get(&self, id: AgentId) -> Result<AgentInfo, RegistryError> {
        let name = id.to_string();
        let data: Option<serde_json::Value> = self
            .run(move |c| {
                async move {
                    agents::table
                        .find(name)
                        .select(agents::data)
                        .first(c)
                        .await
                        .optional()
                        .map_err(map_db)
                }
                .boxed()
            })
            .await
            .map_err(registry_error)?;
        let data = data.ok_or(RegistryError::NotFound(id))?;
        from_json("agent", data).map_err(registry_error)
    }

    async fn list(&self) -> Result<Vec<AgentInfo>, RegistryError> {
        self.run(|c| {
            async move {
                let rows: Vec<serde_json::Value> = agents::table
                    .order(agents::name.asc())
                    .select(agents::data)
                    .load(c)
                    .await
                    .map_err(map_db)?;
                rows.into_iter().map(|r| from_json("agent", r)).collect()
            }
            .boxed()
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
