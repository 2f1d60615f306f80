//! Connections (SPEC §1 "connection", §4.1): every route of the connection API. Create, list
//! and read are here; the lifecycle behind them (link flows, the backfill on connect,
//! pause/resume) is in [`manage`], disconnecting in [`disconnect`]. No answer ever carries a secret.

pub(super) mod disconnect;
pub(super) mod manage;

use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, ApiPath, ApiQuery, Caller, ListParams};
use super::views::List;
use super::Problem;
use crate::services::Services;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use manage::{ConnectionView, CreateConnection};

#[utoipa::path(post, path = "/v1/connections", tag = "connections", request_body = CreateConnection,
    responses((status = 201, body = ConnectionView), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 422, body = Problem),
        (status = 502, body = Problem, description = "the provider's link flow did not answer as expected")))]
pub async fn create_connection(
    State(app): State<Services>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateConnection>,
) -> ApiResult<(StatusCode, Json<ConnectionView>)> {
    manage::create(&app, &caller, body).await
}

#[utoipa::path(get, path = "/v1/connections", tag = "connections", params(ListParams),
    responses((status = 200, body = List<ConnectionView>)))]
pub async fn list_connections(
    State(app): State<Services>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListParams>,
) -> ApiResult<Json<List<ConnectionView>>> {
    let page = app
        .store
        .list_connections(&caller.scope(), caller.visible(), &q.page()?)
        .await?;
    Ok(Json(List::from_page(page, ConnectionView::from)))
}

#[utoipa::path(get, path = "/v1/connections/{id}", tag = "connections", params(("id" = String, Path, description = "connection id")),
    responses((status = 200, body = ConnectionView), (status = 404, body = Problem)))]
pub async fn get_connection(
    State(app): State<Services>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<ConnectionView>> {
    let c = app
        .store
        .get_connection(&caller.scope(), caller.visible(), &id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("connection {id} not found")))?;
    Ok(Json(c.into()))
}
