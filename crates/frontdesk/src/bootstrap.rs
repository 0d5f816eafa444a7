//! Sites and their first admin: made on first start of an empty database (SPEC §5.3) and
//! by `frontdesk site add`.

use anyhow::Context;
use frontdesk_core::error::BackendError;
use frontdesk_core::id::{Id, IdGenerator};
use frontdesk_core::password;
use frontdesk_core::store::{Agent, Role, SecretRef, Site, Store};
use rand::distr::{Alphanumeric, SampleString};

/// The secret under which the first site's id is agreed, so that several nodes starting
/// together on one empty database make one site between them.
const BOOTSTRAP_SITE: &str = "bootstrap_site_id";

/// What a first start created.
#[derive(Debug)]
pub struct Bootstrapped {
    pub site: Site,
    pub admin: Agent,
    /// Set when the password was generated; shown once, never stored in clear.
    pub generated_password: Option<String>,
}

pub struct NewSite<'a> {
    pub name: &'a str,
    pub admin_email: &'a str,
    pub admin_name: &'a str,
    pub admin_password: &'a str,
}

/// Creates the first site and its admin when the database has no site yet.
pub async fn ensure_first_site(
    store: &dyn Store,
    ids: &IdGenerator,
    site_name: &str,
    admin_email: &str,
    admin_password: Option<&str>,
) -> anyhow::Result<Option<Bootstrapped>> {
    if store.site_count().await? > 0 {
        return Ok(None);
    }
    let candidate = ids.next()?;
    let agreed =
        store.secret_or_insert(SecretRef { site_id: None, name: BOOTSTRAP_SITE }, &candidate.0.to_be_bytes()).await?;
    let site_id =
        Id(u64::from_be_bytes(agreed.as_slice().try_into().context("the stored bootstrap site id is not 8 bytes")?));
    if site_id != candidate {
        // Another node won the race and makes the site.
        return Ok(None);
    }
    let generated = admin_password.is_none().then(|| Alphanumeric.sample_string(&mut rand::rng(), 20));
    let password = admin_password.or(generated.as_deref()).unwrap_or_default();
    let (site, admin) = create_site(
        store,
        ids,
        site_id,
        &NewSite { name: site_name, admin_email, admin_name: "Admin", admin_password: password },
    )
    .await?;
    Ok(Some(Bootstrapped { site, admin, generated_password: generated }))
}

/// Makes a site with `site_id` and its admin agent.
pub async fn create_site(
    store: &dyn Store,
    ids: &IdGenerator,
    site_id: Id,
    new: &NewSite<'_>,
) -> anyhow::Result<(Site, Agent)> {
    let email = new.admin_email.trim();
    if !email.contains('@') {
        anyhow::bail!("{email:?} is not an email address");
    }
    if new.admin_password.chars().count() < 8 {
        anyhow::bail!("the admin password must be at least 8 characters");
    }
    if store.agent_by_email(email).await?.is_some() {
        return Err(BackendError::Conflict(format!("an agent with email {email} already exists")).into());
    }
    let now = now_ms();
    let site = Site {
        id: site_id,
        name: new.name.trim().to_string(),
        allowed_domains: Vec::new(),
        settings: serde_json::json!({}),
        created_at: now,
    };
    store.insert_site(&site).await?;
    let admin = new_agent(ids, site_id, email, new.admin_name, new.admin_password, Role::Admin).await?;
    store.insert_agent(&admin).await?;
    Ok((site, admin))
}

/// An agent record with a freshly hashed password (not yet stored).
pub async fn new_agent(
    ids: &IdGenerator,
    site_id: Id,
    email: &str,
    name: &str,
    password: &str,
    role: Role,
) -> anyhow::Result<Agent> {
    if password.chars().count() < 8 {
        anyhow::bail!("the password must be at least 8 characters");
    }
    Ok(Agent {
        id: ids.next()?,
        site_id,
        email: email.trim().to_string(),
        name: name.trim().to_string(),
        password_hash: password::hash(password.to_string()).await?,
        role,
        max_chats: 5,
        priority: 0,
        created_at: now_ms(),
    })
}

use frontdesk_core::time::now_ms;
