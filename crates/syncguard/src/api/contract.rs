//! What every operation of the API shares, written into the OpenAPI document once rather than
//! on each handler: the problems any operation can answer, their media type, and the real
//! bounds of the query parameters. (`Idempotency-Key` is described in the document's
//! description rather than as a parameter of every write: a generated key is either unique,
//! which tells nothing, or reused with another body, which is refused by design.)
//!
//! Each rule below mirrors one piece of code, named beside it, so the document says what the
//! server does:
//! - `401` on every operation that takes a key (`extract::Caller`), `403` where a role or the
//!   key's scope can refuse it, `404` where a path names something.
//! - `400` for malformed JSON (`extract::parse_json`), a cursor this API did not issue
//!   (`extract::ListParams`) or a malformed `Idempotency-Key` (`idempotency`); `422` for a
//!   parameter or field that does not parse or is out of range.
//! - `408`, `413` and `415` for a request body that arrives too slowly, is too large or is not
//!   JSON (`server`, `context`, `extract::ApiJson`).
//! - `409` and `422` for an `Idempotency-Key` in use or reused with another request.
//! - `503` with `Retry-After` whenever the store is unreachable.
//! - Every error is `application/problem+json` (RFC 9457) with the `Problem` schema.

use crate::services::publish::classify::Classification;
use syncguard_core::breaker::CircuitState;
use syncguard_core::class::ErrorClass;
use syncguard_store::events::EventStatus;
use syncguard_store::page::{DEFAULT_LIMIT, MAX_LIMIT};
use syncguard_store::queue::JobState;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, Parameter, ParameterIn};
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, OneOfBuilder, SchemaFormat, Type};
use utoipa::openapi::{Content, OpenApi, Ref, RefOr, Response, Schema};

/// The media type of every error answer.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// The `utoipa::Modify` that applies the rules of this module.
pub struct Contract;

impl utoipa::Modify for Contract {
    fn modify(&self, doc: &mut OpenApi) {
        for (path, item) in doc.paths.paths.iter_mut() {
            let operations = [
                ("get", &mut item.get),
                ("put", &mut item.put),
                ("post", &mut item.post),
                ("delete", &mut item.delete),
                ("patch", &mut item.patch),
            ];
            for (method, op) in operations {
                if let Some(op) = op.as_mut() {
                    shape(path, method, op);
                }
            }
        }
    }
}

/// Applies every rule to one operation.
fn shape(path: &str, method: &str, op: &mut Operation) {
    let v1 = path.starts_with("/v1/");
    let webhook = path.starts_with("/v1/webhooks/");
    // Probes and webhooks say `security: []`; everything else takes a key.
    let keyed = !op.security.as_ref().is_some_and(|s| s.is_empty());
    let has_body = op.request_body.is_some();
    let params = op.parameters.get_or_insert_with(Vec::new);
    let has_path_params = params.iter().any(|p| p.parameter_in == ParameterIn::Path);
    let has_params = !params.is_empty();
    let has_cursor = params.iter().any(|p| p.name == "cursor");
    let writes = v1 && !webhook && method != "get";
    for p in params.iter_mut() {
        bound(path, p);
    }

    let mut add = |status: &str, why: &str| add_problem(op, status, why);
    if keyed {
        add("401", "No key, or a key that is unknown or revoked.");
        add("403", "The key's role or scope does not allow this.");
    }
    if has_path_params {
        add("404", "Not found, or not visible to this key.");
    }
    if has_body {
        add("400", "The body is not well-formed JSON.");
        add("408", "The body did not arrive in time.");
        add("413", "The body is larger than the limit.");
        add("415", "The body is not JSON.");
    }
    if has_cursor {
        add("400", "`cursor` is not one this API issued.");
    }
    if has_body || has_params {
        add(
            "422",
            "A parameter or field is missing, does not parse, or is out of range.",
        );
    }
    if writes {
        add(
            "400",
            "`Idempotency-Key` is not 1 to 255 visible ASCII characters.",
        );
        add(
            "409",
            "A request with this `Idempotency-Key` is still in progress.",
        );
        add(
            "422",
            "This `Idempotency-Key` was used with another request.",
        );
    }
    if v1 {
        add_unavailable(op);
    }
    for (status, response) in op.responses.responses.iter_mut() {
        if status.starts_with('4') || status.starts_with('5') {
            if let RefOr::T(r) = response {
                as_problem(r);
            }
        }
    }
}

/// Documents `status` with `why` as a problem, unless the operation already documents it.
fn add_problem(op: &mut Operation, status: &str, why: &str) {
    op.responses
        .responses
        .entry(status.to_string())
        .or_insert_with(|| RefOr::T(Response::new(why)));
}

fn add_unavailable(op: &mut Operation) {
    let entry = op
        .responses
        .responses
        .entry("503".to_string())
        .or_insert_with(|| {
            RefOr::T(Response::new(
                "The store (or, where the operation calls one, a provider) is unavailable; retry after `Retry-After` seconds.",
            ))
        });
    if let RefOr::T(r) = entry {
        r.headers.entry("Retry-After".into()).or_insert_with(|| {
            HeaderBuilder::new()
                .schema(
                    ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .minimum(Some(0)),
                )
                .description(Some("Seconds to wait before retrying."))
                .build()
        });
    }
}

/// Makes an error response's content `application/problem+json` with the `Problem` schema.
fn as_problem(r: &mut Response) {
    r.content.clear();
    r.content.insert(
        PROBLEM_JSON.into(),
        Content::new(Some(Ref::from_schema_name("Problem"))),
    );
}

/// The real range of the query parameters that are enumerations or bounded, each from the
/// type the handler parses it with.
fn bound(path: &str, p: &mut Parameter) {
    if p.parameter_in != ParameterIn::Query {
        return;
    }
    let names = |all: &mut dyn Iterator<Item = &'static str>| one_of(all.collect());
    let schema: Option<Schema> = match (path, p.name.as_str()) {
        // `extract::ListParams::page`.
        (_, "limit") => Some(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                .minimum(Some(1))
                .maximum(Some(MAX_LIMIT))
                .default(Some(DEFAULT_LIMIT.into()))
                .into(),
        ),
        ("/v1/jobs" | "/v1/dead-letters", "state") => {
            Some(names(&mut JobState::ALL.iter().map(|s| s.as_str())))
        }
        ("/v1/jobs" | "/v1/dead-letters", "error_class") => {
            Some(names(&mut ErrorClass::ALL.iter().map(|c| c.as_str())))
        }
        ("/v1/events", "status") => Some(names(&mut EventStatus::ALL.iter().map(|s| s.as_str()))),
        ("/v1/circuits", "state") => Some(names(&mut CircuitState::ALL.iter().map(|s| s.as_str()))),
        ("/v1/drift", "classification") => {
            Some(names(&mut Classification::ALL.iter().map(|c| c.as_str())))
        }
        // `webhook::events::parse_since`.
        ("/v1/events", "since") => Some(
            OneOfBuilder::new()
                .item(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .pattern(Some("^-?[0-9]{1,15}$"))
                        .description(Some("Milliseconds since the epoch.")),
                )
                .item(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime))),
                )
                .into(),
        ),
        _ => None,
    };
    if let Some(s) = schema {
        p.schema = Some(RefOr::T(s));
    }
}

/// A string that is one of `values`.
fn one_of(values: Vec<&'static str>) -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values))
        .into()
}
