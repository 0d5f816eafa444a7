//! Message signatures (SPEC §5.2, §6): `sig` is HMAC-SHA256 over a message's fields with a
//! per-site key kept in the durable store (`message_mac`), written base64url without
//! padding. It is computed when a message is sent out, so a rebuild can accept exactly the
//! messages this installation once acknowledged. Keys are cached per site in memory; every
//! node reads the same stored key.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use frontdesk_core::id::SiteId;
use frontdesk_core::pipeline::Failure;
use frontdesk_core::store::{SecretRef, Store};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::model::ChatMessage;

type HmacSha256 = Hmac<Sha256>;

pub struct MacKeys {
    store: Arc<dyn Store>,
    cache: Mutex<HashMap<SiteId, Arc<Vec<u8>>>>,
}

impl MacKeys {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store, cache: Mutex::new(HashMap::new()) }
    }

    async fn key(&self, site: SiteId) -> Result<Arc<Vec<u8>>, Failure> {
        if let Some(k) = self.cache.lock().unwrap_or_else(|p| p.into_inner()).get(&site) {
            return Ok(k.clone());
        }
        let candidate: [u8; 32] = rand::random();
        let key =
            self.store.secret_or_insert(SecretRef { site_id: Some(site), name: "message_mac" }, &candidate).await?;
        let key = Arc::new(key);
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).insert(site, key.clone());
        Ok(key)
    }

    fn mac(key: &[u8], msg: &ChatMessage) -> Result<HmacSha256, Failure> {
        let mut mac = HmacSha256::new_from_slice(key).map_err(|e| Failure::internal(format!("bad MAC key: {e}")))?;
        let fields = [
            msg.id.to_string(),
            msg.chat_id.to_string(),
            msg.seq.to_string(),
            msg.data_offset.to_string(),
            msg.message_type.to_string(),
            msg.sender_id.to_string(),
            msg.content.clone(),
            msg.send_time.clone(),
            msg.client_message_id.clone().unwrap_or_default(),
        ];
        // Length-prefixed, so no two different messages feed the MAC the same bytes.
        for f in &fields {
            mac.update(&(f.len() as u64).to_be_bytes());
            mac.update(f.as_bytes());
        }
        Ok(mac)
    }

    /// The message's `sig`.
    pub async fn sign(&self, site: SiteId, msg: &ChatMessage) -> Result<String, Failure> {
        let key = self.key(site).await?;
        Ok(URL_SAFE_NO_PAD.encode(Self::mac(&key, msg)?.finalize().into_bytes()))
    }

    /// Whether `msg.sig` is this site's MAC of the message (in constant time).
    pub async fn verify(&self, site: SiteId, msg: &ChatMessage) -> Result<bool, Failure> {
        let Some(sig) = msg.sig.as_deref() else { return Ok(false) };
        let Ok(bytes) = URL_SAFE_NO_PAD.decode(sig) else { return Ok(false) };
        let key = self.key(site).await?;
        Ok(Self::mac(&key, msg)?.verify_slice(&bytes).is_ok())
    }

    /// The message as sent to clients: its JSON with `sig`.
    pub async fn signed_json(&self, site: SiteId, msg: &ChatMessage) -> Result<Value, Failure> {
        let sig = self.sign(site, msg).await?;
        let mut value =
            serde_json::to_value(msg).map_err(|e| Failure::internal(format!("cannot encode a message: {e}")))?;
        if let Value::Object(map) = &mut value {
            map.insert("sig".into(), Value::String(sig));
        }
        Ok(value)
    }
}
