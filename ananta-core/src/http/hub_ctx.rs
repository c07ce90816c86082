//! The state every hub route shares: the Hub, authentication, options, the live settings,
//! the HTTP client for workers, the OpenAPI document; and connecting a worker by URL.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::http::StatusCode;
use serde_json::Value;

use super::auth::Auth;
use super::client::RemoteAgent;
use super::error::ApiError;
use super::server::HttpOptions;
use super::types::{HealthResponse, HubSettings};
use crate::agent::{AgentCard, AgentEndpoint, AgentInfo, AgentStatus};
use crate::error::{Error, RegistryError};
use crate::hub::Hub;

#[derive(Clone)]
pub(crate) struct HubCtx {
    pub(crate) hub: Hub,
    pub(crate) auth: Auth,
    pub(crate) options: HttpOptions,
    pub(crate) settings: Arc<RwLock<HubSettings>>,
    pub(crate) client: reqwest::Client,
    pub(crate) document: Arc<Value>,
}

impl HubCtx {
    pub(crate) fn settings(&self) -> HubSettings {
        self.settings
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn remote(
        &self,
        card: &AgentCard,
        token: Option<String>,
    ) -> Result<RemoteAgent, ApiError> {
        let AgentEndpoint::Url(url) = &card.endpoint else {
            return Err(ApiError::invalid("the agent has no URL"));
        };
        Ok(RemoteAgent::new(url.clone(), token)?.client(self.client.clone()))
    }

    /// Checks a worker's `/health` before the hub takes it on.
    pub(crate) async fn check_health(
        &self,
        remote: &RemoteAgent,
    ) -> Result<HealthResponse, ApiError> {
        let timeout = Duration::from_millis(self.settings().health_timeout_ms);
        match remote.clone().ping_timeout(timeout).health().await {
            Ok(h) if h.status == "ok" => Ok(h),
            Ok(h) => Err(ApiError::new(
                StatusCode::BAD_GATEWAY,
                "agent_unhealthy",
                format!(
                    "the worker at {} reports status {:?}",
                    remote.base_url(),
                    h.status
                ),
            )),
            Err(e) => Err(ApiError::new(
                StatusCode::BAD_GATEWAY,
                "agent_unreachable",
                format!(
                    "the hub could not reach the worker's /health at {}: {e}",
                    remote.base_url()
                ),
            )),
        }
    }

    /// Registers (or refreshes) a worker reached at its card's URL with `token`; checks its
    /// health first unless it is a known, online, connected agent at the same URL (a
    /// heartbeat).
    pub(crate) async fn connect(
        &self,
        card: AgentCard,
        token: Option<String>,
    ) -> Result<AgentInfo, ApiError> {
        card.validate().map_err(Error::from)?;
        let existing = match self.hub.get_agent(&card.name).await {
            Ok(info) => Some(info),
            Err(Error::Registry(RegistryError::NotFound(_))) => None,
            Err(e) => return Err(e.into()),
        };
        let heartbeat = existing
            .as_ref()
            .is_some_and(|i| i.status == AgentStatus::Online && i.card.endpoint == card.endpoint)
            && self.hub.is_connected(&card.name);
        let remote = self.remote(&card, token)?;
        if !heartbeat {
            self.check_health(&remote).await?;
        }
        Ok(self.hub.register_agent(card, Arc::new(remote)).await?)
    }
}
