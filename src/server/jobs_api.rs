//! `GET /api/jobs` and `GET /api/jobs/{id}`: the job queue as JSON.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;

use super::AppState;
use crate::database::job_steps::StepRun;
use crate::database::jobs::Job;

/// How many jobs the list shows.
const LISTED_JOBS: i64 = 100;

/// The newest jobs, newest first.
pub async fn list_jobs(State(state): State<AppState>) -> Response {
    match state.database.recent_jobs(LISTED_JOBS).await {
        Ok(jobs) => Json(json!({ "jobs": jobs })).into_response(),
        Err(error) => unavailable(error),
    }
}

/// A job as `GET /api/jobs/{id}` shows it: its fields, and `steps`.
#[derive(Serialize)]
struct JobWithSteps {
    #[serde(flatten)]
    job: Job,
    steps: Vec<StepRun>,
}

/// One job, with each run of each of its steps (when it started, how long it took, how
/// it ended).
pub async fn show_job(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let Ok(number) = id.parse::<i64>() else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": "a job id is a number" })),
        )
            .into_response();
    };
    match state.database.job(number).await {
        Ok(Some(job)) => {
            let steps = match state.database.step_runs(number, number).await {
                Ok(runs) => runs.into_iter().map(|(_, run)| run).collect(),
                Err(error) => return unavailable(error),
            };
            Json(JobWithSteps { job, steps }).into_response()
        }
        Ok(None) => (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": format!("no job {number}") })),
        )
            .into_response(),
        Err(error) => unavailable(error),
    }
}

fn unavailable(error: crate::database::DatabaseError) -> Response {
    tracing::error!(%error, "reading jobs");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({ "error": "database unavailable" })),
    )
        .into_response()
}
