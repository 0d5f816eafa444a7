//! The pipeline file (SPEC §5.5, seed 000): which stages each event runs. Parsed from JSON
//! with every problem reported at its place (`"visitor.page_visit".did[2].url: …`), and
//! written back in the same format (`GET /api/v1/events`, `frontdesk pipelines`).

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{json, Map, Value};

/// The three phases, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    Will,
    Do,
    Did,
}

impl Phase {
    pub const ALL: [Phase; 3] = [Phase::Will, Phase::Do, Phase::Did];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Will => "will",
            Phase::Do => "do",
            Phase::Did => "did",
        }
    }
}

/// One stage as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageSpec {
    /// `module/action` (in process) or an `http(s)://` URL (out of process).
    pub url: String,
    /// `"type": "async"`: runs from the bus after the answer.
    pub is_async: bool,
    pub optional: bool,
    pub timeout_ms: Option<u64>,
}

impl StageSpec {
    pub fn is_remote(&self) -> bool {
        is_http_url(&self.url)
    }
}

/// One event's stages (or `base`'s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSpec {
    /// Whether `base` stages run first (`"base": false` opts out).
    pub base: bool,
    pub will: Vec<StageSpec>,
    pub r#do: Vec<StageSpec>,
    pub did: Vec<StageSpec>,
}

impl EventSpec {
    pub fn phase(&self, phase: Phase) -> &[StageSpec] {
        match phase {
            Phase::Will => &self.will,
            Phase::Do => &self.r#do,
            Phase::Did => &self.did,
        }
    }

    fn phase_mut(&mut self, phase: Phase) -> &mut Vec<StageSpec> {
        match phase {
            Phase::Will => &mut self.will,
            Phase::Do => &mut self.r#do,
            Phase::Did => &mut self.did,
        }
    }
}

/// A whole pipeline file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PipelineFile {
    pub base: Option<EventSpec>,
    pub events: BTreeMap<String, EventSpec>,
}

/// Why a pipeline file was refused: every problem, each with its place.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct LoadError {
    pub problems: Vec<String>,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the pipeline file has {} problem(s): {}", self.problems.len(), self.problems.join("; "))
    }
}

impl PipelineFile {
    /// Parses and validates `text`. `handler_exists` says whether a `module/action` is
    /// registered.
    pub fn parse(text: &str, handler_exists: &dyn Fn(&str) -> bool) -> Result<PipelineFile, LoadError> {
        let root: Value = serde_json::from_str(text)
            .map_err(|e| LoadError { problems: vec![format!("line {} column {}: {e}", e.line(), e.column())] })?;
        let mut problems = Vec::new();
        let Value::Object(entries) = root else {
            return Err(LoadError { problems: vec!["the file must be a JSON object of events".into()] });
        };
        let mut file = PipelineFile::default();
        for (name, body) in entries {
            let place = format!("{name:?}");
            if name == "base" {
                if let Some(spec) = parse_event(&place, &body, true, handler_exists, &mut problems) {
                    file.base = Some(spec);
                }
                continue;
            }
            if !is_event_name(&name) {
                problems.push(format!(
                    "{place}: not an event name (expected lowercase words joined by dots, e.g. \"chat.request\")"
                ));
                continue;
            }
            if let Some(spec) = parse_event(&place, &body, false, handler_exists, &mut problems) {
                file.events.insert(name, spec);
            }
        }
        if problems.is_empty() {
            Ok(file)
        } else {
            Err(LoadError { problems })
        }
    }

    /// The file in its JSON format.
    pub fn to_json(&self) -> Value {
        let mut root = Map::new();
        if let Some(base) = &self.base {
            root.insert("base".into(), event_json(base, true));
        }
        for (name, spec) in &self.events {
            root.insert(name.clone(), event_json(spec, false));
        }
        Value::Object(root)
    }
}

fn parse_event(
    place: &str,
    body: &Value,
    is_base: bool,
    handler_exists: &dyn Fn(&str) -> bool,
    problems: &mut Vec<String>,
) -> Option<EventSpec> {
    let Value::Object(fields) = body else {
        problems.push(format!("{place}: expected an object with \"will\", \"do\" and \"did\" lists"));
        return None;
    };
    let mut spec = EventSpec { base: true, will: Vec::new(), r#do: Vec::new(), did: Vec::new() };
    for (key, value) in fields {
        let here = format!("{place}.{key}");
        match key.as_str() {
            "base" if !is_base => match value {
                Value::Bool(b) => spec.base = *b,
                _ => problems.push(format!("{here}: expected true or false")),
            },
            "will" | "do" | "did" => {
                let phase = match key.as_str() {
                    "will" => Phase::Will,
                    "do" => Phase::Do,
                    _ => Phase::Did,
                };
                let Value::Array(stages) = value else {
                    problems.push(format!("{here}: expected a list of stages"));
                    continue;
                };
                for (i, stage) in stages.iter().enumerate() {
                    if let Some(s) = parse_stage(&format!("{here}[{i}]"), stage, handler_exists, problems) {
                        spec.phase_mut(phase).push(s);
                    }
                }
            }
            other => {
                let allowed = if is_base { "\"will\", \"do\", \"did\"" } else { "\"base\", \"will\", \"do\", \"did\"" };
                problems.push(format!("{place}: unknown key {other:?} (allowed: {allowed})"));
            }
        }
    }
    Some(spec)
}

fn parse_stage(
    place: &str,
    value: &Value,
    handler_exists: &dyn Fn(&str) -> bool,
    problems: &mut Vec<String>,
) -> Option<StageSpec> {
    let Value::Object(fields) = value else {
        problems.push(format!("{place}: expected a stage object like {{\"url\": \"module/action\"}}"));
        return None;
    };
    let before = problems.len();
    let mut stage = StageSpec { url: String::new(), is_async: false, optional: false, timeout_ms: None };
    for (key, v) in fields {
        let here = format!("{place}.{key}");
        match key.as_str() {
            "url" => match v {
                Value::String(url) => stage.url = url.clone(),
                _ => problems.push(format!("{here}: expected a string")),
            },
            "type" => match v.as_str() {
                Some("async") => stage.is_async = true,
                Some("sync") => stage.is_async = false,
                _ => problems.push(format!("{here}: expected \"sync\" or \"async\"")),
            },
            "optional" => match v {
                Value::Bool(b) => stage.optional = *b,
                _ => problems.push(format!("{here}: expected true or false")),
            },
            "timeoutMs" => match v.as_u64() {
                Some(ms) if (1..=600_000).contains(&ms) => stage.timeout_ms = Some(ms),
                _ => problems.push(format!("{here}: expected a whole number of milliseconds from 1 to 600000")),
            },
            other => problems.push(format!(
                "{place}: unknown key {other:?} (allowed: \"url\", \"type\", \"optional\", \"timeoutMs\")"
            )),
        }
    }
    let here = format!("{place}.url");
    if !fields.contains_key("url") {
        problems.push(format!("{place}: missing \"url\""));
    } else if stage.url.is_empty() && fields.get("url").is_some_and(Value::is_string) {
        problems.push(format!("{here}: must not be empty"));
    } else if is_http_url(&stage.url) {
        if stage.url.split("://").nth(1).is_none_or(|rest| rest.is_empty() || rest.starts_with('/')) {
            problems.push(format!("{here}: {:?} has no host", stage.url));
        }
    } else if !stage.url.is_empty() {
        if !is_handler_name(&stage.url) {
            problems.push(format!(
                "{here}: {:?} is neither a handler name like \"module/action\" nor an http(s):// URL",
                stage.url
            ));
        } else if !handler_exists(&stage.url) {
            problems.push(format!("{here}: unknown handler {:?}", stage.url));
        }
    }
    (problems.len() == before).then_some(stage)
}

fn event_json(spec: &EventSpec, is_base: bool) -> Value {
    let mut obj = Map::new();
    if !is_base && !spec.base {
        obj.insert("base".into(), Value::Bool(false));
    }
    for phase in Phase::ALL {
        let stages = spec.phase(phase);
        if !stages.is_empty() {
            obj.insert(phase.as_str().into(), Value::Array(stages.iter().map(stage_json).collect()));
        }
    }
    Value::Object(obj)
}

fn stage_json(stage: &StageSpec) -> Value {
    let mut obj = Map::new();
    obj.insert("url".into(), json!(stage.url));
    if stage.is_async {
        obj.insert("type".into(), json!("async"));
    }
    if stage.optional {
        obj.insert("optional".into(), json!(true));
    }
    if let Some(ms) = stage.timeout_ms {
        obj.insert("timeoutMs".into(), json!(ms));
    }
    Value::Object(obj)
}

pub fn is_http_url(url: &str) -> bool {
    url.starts_with("http://") || url.starts_with("https://")
}

fn is_word(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// `chat.request`, `chat.audio.visitor_request`: lowercase words joined by dots.
pub fn is_event_name(name: &str) -> bool {
    name.contains('.') && name.split('.').all(is_word)
}

/// `module/action`.
pub fn is_handler_name(name: &str) -> bool {
    match name.split_once('/') {
        Some((module, action)) => is_word(module) && action.split('.').all(is_word),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(name: &str) -> bool {
        ["auth/resolve_caller", "visitor/page_visit", "rule/segments", "rule/conversion"].contains(&name)
    }

    const SPEC_EXAMPLE: &str = r#"{
      "base": { "will": [ { "url": "auth/resolve_caller" } ] },
      "visitor.page_visit": {
        "will": [],
        "do":   [ { "url": "visitor/page_visit" } ],
        "did":  [ { "url": "rule/segments" },
                  { "url": "rule/conversion", "type": "async" },
                  { "url": "http://127.0.0.1:9000/crm-hook", "optional": true, "timeoutMs": 800 } ]
      },
      "visitor.enter_site": { "base": false, "do": [ { "url": "visitor/page_visit" } ] }
    }"#;

    #[test]
    fn the_spec_example_parses_and_round_trips() {
        let file = PipelineFile::parse(SPEC_EXAMPLE, &known).expect("valid");
        let pv = &file.events["visitor.page_visit"];
        assert!(pv.base);
        assert_eq!(pv.did.len(), 3);
        assert!(pv.did[1].is_async);
        assert!(pv.did[2].optional && pv.did[2].is_remote());
        assert_eq!(pv.did[2].timeout_ms, Some(800));
        assert!(!file.events["visitor.enter_site"].base);
        let again = PipelineFile::parse(&file.to_json().to_string(), &known).expect("round trip");
        assert_eq!(again, file);
    }

    #[test]
    fn every_problem_is_named_at_its_place() {
        let text = r#"{
          "chat.request": {
            "will": [ { "url": "auth/nope" } ],
            "did": [ { "url": "rule/segments", "timeout": 5 }, { "url": 7 }, { "optional": "yes", "url": "rule/segments" } ],
            "done": []
          },
          "Bad Name": {},
          "chat.end": { "do": {}, "base": "no" },
          "chat.start": { "do": [ { "url": "http://" }, { "url": "not a handler" }, { "url": "rule/conversion", "type": "later" } ] }
        }"#;
        let err = PipelineFile::parse(text, &known).expect_err("invalid");
        let all = err.problems.join("\n");
        for expected in [
            r#""chat.request".will[0].url: unknown handler "auth/nope""#,
            r#""chat.request".did[0]: unknown key "timeout""#,
            r#""chat.request".did[1].url: expected a string"#,
            r#""chat.request".did[2].optional: expected true or false"#,
            r#""chat.request": unknown key "done""#,
            r#""Bad Name": not an event name"#,
            r#""chat.end".do: expected a list of stages"#,
            r#""chat.end".base: expected true or false"#,
            r#""chat.start".do[0].url: "http://" has no host"#,
            r#""chat.start".do[1].url: "not a handler" is neither"#,
            r#""chat.start".do[2].type: expected "sync" or "async""#,
        ] {
            assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
        }
        assert_eq!(err.problems.len(), 11, "{all}");
    }

    #[test]
    fn malformed_json_names_line_and_column() {
        let err = PipelineFile::parse("{\n  \"chat.end\": [,]\n}", &known).expect_err("bad json");
        assert!(err.problems[0].starts_with("line 2 column"), "{err}");
        let err = PipelineFile::parse("[]", &known).expect_err("not an object");
        assert!(err.to_string().contains("JSON object"));
    }

    #[test]
    fn names() {
        assert!(is_event_name("chat.audio.visitor_request"));
        assert!(!is_event_name("chat"));
        assert!(!is_event_name("Chat.x"));
        assert!(is_handler_name("rule/segments"));
        assert!(!is_handler_name("rule/"));
        assert!(!is_handler_name("rule"));
    }
}

/// Property tests (issue #8): whatever the text, parsing never panics, a refusal names the
/// place of every problem, and an accepted file round-trips. Cases: `PROPTEST_CASES`
/// (default 256).
#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    fn known(name: &str) -> bool {
        ["auth/resolve_caller", "chat/offsets", "rule/segments"].contains(&name)
    }

    /// Keys and strings a pipeline file uses, plus anything at all.
    fn word() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => prop::sample::select(vec![
                "base", "will", "do", "did", "url", "type", "optional", "timeoutMs", "async", "sync",
                "chat.request", "chat.end", "Bad Name", "auth/resolve_caller", "chat/offsets", "rule/segments",
                "auth/nope", "http://127.0.0.1:9/hook", "https://", "http:///x", "",
            ])
            .prop_map(str::to_string),
            1 => "[a-z_./:]{0,16}",
            1 => any::<String>(),
        ]
    }

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            prop_oneof![any::<i64>(), 0i64..700_000].prop_map(|n| json!(n)),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
            word().prop_map(Value::String),
        ]
    }

    /// Any JSON, shaped like a pipeline file often enough to reach the deep checks.
    fn json_value() -> impl Strategy<Value = Value> {
        leaf().prop_recursive(5, 96, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::btree_map(word(), inner, 0..5).prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn stage() -> impl Strategy<Value = Value> {
        prop::collection::btree_map(word(), leaf(), 0..4).prop_map(|m| Value::Object(m.into_iter().collect()))
    }

    fn pipeline_file() -> impl Strategy<Value = Value> {
        let event = prop::collection::btree_map(
            word(),
            prop_oneof![prop::collection::vec(stage(), 0..4).prop_map(Value::Array), leaf()],
            0..4,
        )
        .prop_map(|m| Value::Object(m.into_iter().collect()));
        prop::collection::btree_map(word(), prop_oneof![4 => event, 1 => leaf()], 0..5)
            .prop_map(|m| Value::Object(m.into_iter().collect()))
    }

    /// Every problem starts with the quoted root key it is about.
    fn check_places(root: &Value, err: &LoadError) -> Result<(), TestCaseError> {
        prop_assert!(!err.problems.is_empty());
        let Value::Object(entries) = root else {
            prop_assert_eq!(&err.problems, &vec!["the file must be a JSON object of events".to_string()]);
            return Ok(());
        };
        let places: Vec<String> = entries.keys().map(|k| format!("{k:?}")).collect();
        for problem in &err.problems {
            let named = places
                .iter()
                .any(|p| problem.strip_prefix(p.as_str()).is_some_and(|rest| rest.starts_with([':', '.', '['])));
            prop_assert!(named, "a problem names no place: {problem:?}");
        }
        Ok(())
    }

    fn check(root: &Value) -> Result<(), TestCaseError> {
        match PipelineFile::parse(&root.to_string(), &known) {
            Ok(file) => {
                let again = PipelineFile::parse(&file.to_json().to_string(), &known);
                prop_assert_eq!(again.as_ref(), Ok(&file), "an accepted file does not round-trip");
            }
            Err(err) => check_places(root, &err)?,
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn any_text_is_refused_with_reasons_or_accepted(text in any::<String>()) {
            if let Err(err) = PipelineFile::parse(&text, &known) {
                prop_assert!(!err.problems.is_empty() && err.problems.iter().all(|p| !p.is_empty()));
            }
        }

        #[test]
        fn broken_json_names_line_and_column(file in pipeline_file(), cut in any::<prop::sample::Index>()) {
            let text = file.to_string();
            // Cut anywhere inside: the JSON is incomplete, and the error says where.
            let end = text.char_indices().map(|(i, _)| i).filter(|i| *i > 0).collect::<Vec<_>>();
            prop_assume!(!end.is_empty());
            let err = PipelineFile::parse(&text[..end[cut.index(end.len())]], &known).expect_err("truncated JSON");
            prop_assert!(err.problems[0].starts_with("line "), "{:?}", err.problems);
        }

        #[test]
        fn any_json_is_refused_at_named_places_or_round_trips(root in json_value()) {
            check(&root)?;
        }

        #[test]
        fn pipeline_shaped_json_is_refused_at_named_places_or_round_trips(root in pipeline_file()) {
            check(&root)?;
        }
    }
}
