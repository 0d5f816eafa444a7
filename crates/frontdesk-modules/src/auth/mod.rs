//! The auth module: resolves the caller of every request once (the `base` stage
//! `auth/resolve_caller`) and guards events by who may call them (`auth/require_*`).
//!
//! An agent's access token is refused once its session is revoked (`agent.logout`, a
//! reused refresh token, the agent deleted or its role changed): the agent module marks
//! `model::session_key(sid)` `revoked`, and this stage reads that one field per call.

use std::sync::Arc;

use async_trait::async_trait;
use frontdesk_core::pipeline::{Caller, Ctx, Failure, Handler, Registry, Step};
use frontdesk_core::store::Role;
use serde_json::json;
use subtle::ConstantTimeEq;

use frontdesk_core::state::StateStore;

use crate::model::session_key;
use crate::tokens::Tokens;
use crate::{Deps, RegisterError};

pub fn register(registry: &mut Registry, deps: &Deps) -> Result<(), RegisterError> {
    let resolve = ResolveCaller {
        tokens: deps.tokens.clone(),
        operator_token: deps.operator_token.clone(),
        state: deps.backends.state.clone(),
    };
    registry.register("auth/resolve_caller", Arc::new(resolve))?;
    for (name, need) in [
        ("auth/require_visitor", Need::Visitor),
        ("auth/require_agent", Need::Agent(Role::Agent)),
        ("auth/require_supervisor", Need::Agent(Role::Supervisor)),
        ("auth/require_admin", Need::Agent(Role::Admin)),
        ("auth/require_operator", Need::Operator),
    ] {
        registry.register(name, Arc::new(Require(need)))?;
    }
    registry.register("auth/whoami", Arc::new(WhoAmI))?;
    Ok(())
}

/// Bearer token → [`Caller`]: the operator token, an agent access token of a live session,
/// or a visitor token.
struct ResolveCaller {
    tokens: Arc<Tokens>,
    operator_token: Option<String>,
    state: Arc<dyn StateStore>,
}

#[async_trait]
impl Handler for ResolveCaller {
    async fn run(&self, ctx: &mut Ctx) -> Result<Step, Failure> {
        if ctx.caller == Caller::System {
            return Ok(Step::Next);
        }
        let Some(token) = ctx.request.bearer.as_deref().filter(|t| !t.is_empty()) else {
            return Err(Failure::unauthorized(format!(
                "{} needs credentials: send `Authorization: Bearer <token>` (or `?token=` on the socket)",
                ctx.event
            )));
        };
        if let Some(operator) = &self.operator_token {
            if bool::from(operator.as_bytes().ct_eq(token.as_bytes())) {
                ctx.caller = Caller::Operator;
                return Ok(Step::Next);
            }
        }
        let caller = self.tokens.verify(token)?;
        if let Caller::Agent { session_id, .. } = &caller {
            if self.state.hget(&session_key(session_id), "revoked").await?.as_deref() == Some("1") {
                return Err(Failure::unauthorized("this session has been logged out; log in again"));
            }
        }
        ctx.caller = caller;
        Ok(Step::Next)
    }
}

#[derive(Clone, Copy)]
enum Need {
    Visitor,
    /// An agent with at least this role (admin > supervisor > agent).
    Agent(Role),
    Operator,
}

fn rank(role: Role) -> u8 {
    match role {
        Role::Agent => 0,
        Role::Supervisor => 1,
        Role::Admin => 2,
    }
}

struct Require(Need);

#[async_trait]
impl Handler for Require {
    async fn run(&self, ctx: &mut Ctx) -> Result<Step, Failure> {
        let ok = match (self.0, &ctx.caller) {
            (_, Caller::System) => true,
            (Need::Visitor, Caller::Visitor { .. }) => true,
            (Need::Agent(need), Caller::Agent { role, .. }) => rank(*role) >= rank(need),
            (Need::Operator, Caller::Operator) => true,
            _ => false,
        };
        if ok {
            return Ok(Step::Next);
        }
        let who = match self.0 {
            Need::Visitor => "a visitor".to_string(),
            Need::Agent(Role::Agent) => "an agent".to_string(),
            Need::Agent(role) => format!("an agent with role {} or higher", role.as_str()),
            Need::Operator => "the operator".to_string(),
        };
        Err(Failure::forbidden(format!("only {who} may call {}", ctx.event)))
    }
}

/// Answers with the resolved caller (`auth.whoami`), for clients and integrations that
/// want to check a token.
struct WhoAmI;

#[async_trait]
impl Handler for WhoAmI {
    async fn run(&self, ctx: &mut Ctx) -> Result<Step, Failure> {
        let caller = serde_json::to_value(&ctx.caller).map_err(|e| Failure::internal(e.to_string()))?;
        ctx.set_result("caller", caller);
        ctx.set_result("event", json!(ctx.event.as_ref()));
        Ok(Step::Next)
    }
}
