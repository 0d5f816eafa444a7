//! `GET /api/v1/openapi.json` (SPEC §5.3): an OpenAPI 3.1 document built from what this node
//! actually serves — one `POST /api/v1/{event}` operation per event of the active pipeline
//! file, plus the REST routes of [`crate::rest::table`] — so it never drifts from the
//! pipelines (an event added by editing the file appears here after the reload).

use axum::extract::State;
use axum::Json;
use frontdesk_core::pipeline::PipelineFile;
use serde_json::{json, Map, Value};

use crate::rest;
use crate::AppState;

/// Events no client calls: the server runs them itself.
const INTERNAL: &[&str] = &["server.start", "server.end", "socket.connect", "socket.disconnect"];

pub async fn document(State(app): State<AppState>) -> Json<Value> {
    Json(build(&app.inner.engine.pipelines()))
}

/// The document for `file`.
pub fn build(file: &PipelineFile) -> Value {
    let mut paths = Map::new();
    for (name, spec) in &file.events {
        if INTERNAL.contains(&name.as_str()) {
            continue;
        }
        let stages: Vec<&str> =
            [&spec.will, &spec.r#do, &spec.did].into_iter().flatten().map(|s| s.url.as_str()).collect();
        let mut op = json!({
            "operationId": name,
            "tags": [name.split('.').next().unwrap_or(name)],
            "summary": format!("Calls the {name} event"),
            "description": format!("Stages: {}. Also callable as a WebSocket frame on /api/v1/ws.", stages.join(" → ")),
            "parameters": [
                {"name": "X-Visitor-Data-Offset", "in": "header", "required": false,
                 "schema": {"type": "integer", "minimum": 0}, "description": "The highest visitor-side offset the client holds (SPEC §6)."},
                {"name": "X-Agent-Data-Offset", "in": "header", "required": false,
                 "schema": {"type": "integer", "minimum": 0}, "description": "The highest agent-side offset the client holds (SPEC §6)."}
            ],
            "requestBody": {"required": false, "content": {"application/json": {"schema": {"type": "object"}}}},
            "responses": responses(),
        });
        if !spec.base {
            op["security"] = json!([]);
        }
        paths.insert(format!("/api/v1/{name}"), json!({ "post": op }));
    }
    for route in rest::table() {
        let mut op = json!({
            "operationId": format!("rest.{}", route.event),
            "tags": ["rest"],
            "summary": format!("Runs the {} event", route.event),
            "responses": responses(),
        });
        if route.path.contains("{id}") {
            op["parameters"] = json!([{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}]);
        }
        if route.method != axum::http::Method::GET && route.method != axum::http::Method::DELETE {
            op["requestBody"] =
                json!({"required": true, "content": {"application/json": {"schema": {"type": "object"}}}});
        }
        let entry = paths.entry(route.path.to_string()).or_insert_with(|| json!({}));
        entry[route.method.as_str().to_ascii_lowercase()] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Frontdesk event API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Every event answers a ReturnResult (SPEC §5.2). Ids are 64-bit snowflakes written as strings."
        },
        "paths": paths,
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                "description": "An agent's access token, a visitor token, or the operator token."}},
            "schemas": {
                "ReturnResult": {
                    "type": "object",
                    "required": ["code"],
                    "properties": {
                        "code": {"type": "integer", "enum": [0, 1, -1], "description": "0 success, 1 rebuild needed (SPEC §6), -1 error"},
                        "visitorDataOffset": {"type": "integer"},
                        "agentDataOffset": {"type": "integer"},
                        "messages": {"type": "array", "items": {"$ref": "#/components/schemas/ChatMessage"}},
                        "data": {"type": "object"},
                        "error": {"$ref": "#/components/schemas/Error"}
                    }
                },
                "Error": {
                    "type": "object",
                    "required": ["kind", "message"],
                    "properties": {
                        "kind": {"type": "string", "enum": frontdesk_core::error::ErrorKind::ALL.iter().map(|k| k.as_str()).collect::<Vec<_>>()},
                        "message": {"type": "string"}
                    }
                },
                "ChatMessage": {
                    "type": "object",
                    "required": ["id", "chatId", "seq", "dataOffset", "messageType", "senderId", "content", "sendTime", "sig"],
                    "properties": {
                        "id": {"type": "string"}, "chatId": {"type": "string"}, "seq": {"type": "integer"},
                        "dataOffset": {"type": "integer"},
                        "messageType": {"type": "integer", "enum": [1, 2, 3, 4], "description": "1 visitor, 2 agent, 3 bot, 4 system"},
                        "senderId": {"type": "string"}, "senderName": {"type": "string"}, "content": {"type": "string"},
                        "sendTime": {"type": "string", "format": "date-time"}, "clientMessageId": {"type": "string"},
                        "attachment": {"type": "object"}, "sig": {"type": "string"}
                    }
                }
            }
        }
    })
}

fn responses() -> Value {
    let error = json!({"description": "An error (code -1) of the kind the status stands for",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ReturnResult"}}}});
    json!({
        "200": {"description": "A ReturnResult (code 0, or 1 when the client must rebuild)",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ReturnResult"}}}},
        "400": error, "401": error, "403": error, "404": error, "409": error, "413": error,
        "429": error, "500": error, "503": error
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_and_rest_route_is_described() {
        let text = r#"{"base": {"will": [{"url": "auth/resolve_caller"}]},
            "server.start": {"base": false, "do": [{"url": "engine/start_workers"}]},
            "agent.login": {"base": false, "do": [{"url": "agent/login"}]},
            "chat.request": {"do": [{"url": "chat/create"}]}}"#;
        let file = PipelineFile::parse(text, &|_| true).expect("file");
        let doc = build(&file);
        assert_eq!(doc["openapi"], "3.1.0");
        assert!(doc["paths"]["/api/v1/chat.request"]["post"].is_object());
        assert_eq!(doc["paths"]["/api/v1/agent.login"]["post"]["security"], json!([]), "no token for login");
        assert!(doc["paths"].get("/api/v1/server.start").is_none(), "internal events are not offered");
        for route in rest::table() {
            let method = route.method.as_str().to_ascii_lowercase();
            assert!(doc["paths"][route.path][&method].is_object(), "{} {}", route.method, route.path);
        }
    }
}
